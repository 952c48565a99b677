"""Full, sampled and hierarchical softmax output layers (jaxdl/layers/softmax.py)."""

import heapq

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from jaxdl.layers import softmax as S

DIM = 8


def build(name, vocab, seed=0, **kw):
    with nnx.use_eager_sharding(False):
        layer = S.make(name, DIM, vocab, rngs=nnx.Rngs(seed), **kw)
    # random (not zero) biases so that every parameter matters in the checks
    layer.bias[...] = jnp.asarray(0.3 * np.random.default_rng(seed + 100).normal(size=layer.bias.shape), jnp.float32)
    return layer


def param_grad(layer, fn, *args, over=None):
    """Flat gradient of fn(layer, *args) with respect to the layer's Params, in one jitted call; with `over`
    (an array [n, ...]) the mean over its rows of the gradients of fn(layer, *args, row)."""
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    @jax.jit
    def grad(params, rest, args, over):
        one = lambda *extra: ravel_pytree(jax.grad(lambda p: fn(nnx.merge(graphdef, p, rest), *args, *extra))(params))
        return one()[0] if over is None else jnp.mean(jax.vmap(lambda row: one(row)[0])(over), 0)

    return grad(params, rest, args, over)


def hidden(shape, seed=1):
    """float32 [*shape, DIM] (numpy-made: no eager XLA compile per test)."""
    return jnp.asarray(np.random.default_rng(seed).normal(size=(*shape, DIM)), jnp.float32)


def randint(shape, high, seed):
    return jnp.asarray(np.random.default_rng(seed).integers(0, high, shape), jnp.int32)


@pytest.mark.parametrize("tree", ["huffman", "balanced"])
def test_hierarchical_probabilities_sum_to_one(tree):
    vocab = 53
    counts = np.random.default_rng(0).zipf(1.5, vocab).astype(float)
    layer = build("hierarchical", vocab, tree=tree, counts=counts)
    h, targets = hidden((4, 6)), randint((4, 6), vocab, 2)
    lp, lp_targets = nnx.jit(lambda m, h, t: (m.log_probs(h), m.log_prob(h, t)))(layer, h, targets)
    assert lp.shape == (4, 6, vocab)
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(lp_targets, np.take_along_axis(lp, targets[..., None], -1)[..., 0], atol=1e-5)


def test_huffman_tree_is_an_optimal_prefix_code():
    vocab = 40
    counts = np.random.default_rng(3).integers(1, 1000, vocab).astype(float)
    nodes, signs, mask = S.tree_paths(vocab, "huffman", counts)
    lengths = mask.sum(1)
    codes = {tuple(s[m > 0]) for s, m in zip(signs, mask, strict=True)}
    assert len(codes) == vocab  # distinct codes ...
    assert all(c[: len(d)] != d for c in codes for d in codes if len(d) < len(c))  # ... none a prefix of another
    assert np.isclose((2.0**-lengths).sum(), 1.0)  # Kraft equality: a full binary tree
    assert (nodes[:, 0] == nodes[0, 0]).all()  # one root
    heap, cost = list(counts), 0.0  # Huffman's cost: the sum of the merged weights
    heapq.heapify(heap)
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        cost += merged
        heapq.heappush(heap, merged)
    assert np.isclose((counts * lengths).sum(), cost)
    frequent, rare = np.argmax(counts), np.argmin(counts)
    assert lengths[frequent] <= lengths[rare]


@pytest.mark.parametrize("tree", ["huffman", "balanced"])
def test_hierarchical_gradient_matches_naive_path_loop(tree):
    vocab = 23
    counts = np.random.default_rng(1).integers(1, 50, vocab)
    layer = build("hierarchical", vocab, tree=tree, counts=counts)
    nodes, signs, mask = (np.asarray(a) for a in S.tree_paths(vocab, tree, counts))
    h = hidden((7,))
    targets = jnp.array([0, 3, 22, 5, 5, -1, 11])

    def naive(layer, h):  # one word at a time, one node at a time
        kernel, bias, total = layer.kernel[...], layer.bias[...], 0.0
        for n, w in enumerate(np.asarray(targets)):
            if w < 0:
                continue
            for node, sign, m in zip(nodes[w], signs[w], mask[w], strict=True):
                if m:
                    total = total - jax.nn.log_sigmoid(sign * (h[n] @ kernel[node] + bias[node]))
        return total

    fast = lambda layer, h: layer(h, targets).sum()
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)
    results = []
    for fn in (fast, naive):  # the loss and its gradients with respect to the parameters and the hidden states
        loss = lambda p, x, f=fn: f(nnx.merge(graphdef, p, rest), x)
        results.append(jax.tree.leaves(jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, h)))
    for got, want in zip(*results, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_full_softmax_is_cross_entropy_and_sampled_eval_is_exact():
    vocab = 31
    full = build("full", vocab)
    sampled = build("sampled", vocab, num_sampled=5)  # same seed: same weights
    h, targets = hidden((3, 4)), randint((3, 4), vocab, 5)

    @nnx.jit
    def run(full, sampled, h, targets):
        logits = h @ full.kernel[...].T + full.bias[...]
        reference = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
        return (reference, full(h, targets), full.log_probs(h), sampled(h, targets),
                sampled(h, targets, train=True, rngs=jax.random.key(0)))  # fmt: skip

    reference, loss, log_probs, sampled_eval, sampled_train = run(full, sampled, h, targets)
    np.testing.assert_allclose(loss, reference, rtol=1e-5)
    np.testing.assert_allclose(np.exp(log_probs).sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(sampled_eval, reference, rtol=1e-5)
    assert not np.allclose(sampled_train, reference)


def test_sampled_loss_matches_its_definition():
    vocab, counts = 17, np.arange(17, 0, -1) * 10.0
    layer = build("sampled", vocab, num_sampled=6, proposal="unigram", counts=counts, unique=False)
    h, targets = hidden((5,)), jnp.array([2, 0, 9, 16, 4])
    negatives = jnp.array([0, 2, 2, 7, 16, 0])  # duplicates and accidental hits of targets 2, 0 and 16
    q = (counts + 1e-3) ** 0.75
    log_q = np.log(6 * q / q.sum())
    logits = np.asarray(h @ layer.kernel[...].T + layer.bias[...], np.float64) - log_q
    expected = []
    for n, t in enumerate(np.asarray(targets)):
        others = [logits[n, j] for j in np.asarray(negatives) if j != t]
        expected.append(-logits[n, t] + np.log(np.exp(logits[n, t]) + np.exp(others).sum()))
    np.testing.assert_allclose(nnx.jit(type(layer).sampled_loss)(layer, h, targets, negatives), expected, rtol=1e-5)


def test_sampled_gradient_approaches_full_gradient_in_expectation():
    """Uniform proposal, K = V - 1 negatives without replacement, accidental hits removed: averaged over many
    draws, the gradient is the full-softmax gradient up to the one class a draw leaves out (rare: small bias);
    keeping accidental hits (the target counted twice) misses it by far."""
    vocab = 40
    full = build("full", vocab)
    h, targets = hidden((16,)), randint((16,), vocab, 7)
    exact = param_grad(full, lambda m: m(h, targets).mean())
    seeds = jnp.arange(256)

    def mc_grad(remove_hits):
        layer = build("sampled", vocab, num_sampled=vocab - 1, proposal="uniform", remove_accidental_hits=remove_hits)
        return param_grad(layer, lambda m, s: m(h, targets, train=True, rngs=jax.random.key(s)).mean(), over=seeds)

    rel = lambda g: float(jnp.linalg.norm(g - exact) / jnp.linalg.norm(exact))
    good, kept_hits = rel(mc_grad(True)), rel(mc_grad(False))
    assert good < 0.01 and kept_hits > 3 * good, (good, kept_hits)


def test_log_q_correction_reduces_the_bias():
    """A skewed (log-uniform) proposal sampled with replacement: with the -log Q correction the Monte Carlo mean
    gradient is much closer to the full-softmax gradient than without it."""
    vocab = 60
    layer = build("sampled", vocab, num_sampled=30, proposal="log_uniform", unique=False)
    h, targets = hidden((32,)), randint((32,), vocab, 9)
    exact = param_grad(layer, lambda m: m(h, targets).mean())
    negatives = nnx.jit(lambda m: jax.vmap(m.sample)(jax.random.split(jax.random.key(10), 256)))(layer)
    assert negatives.shape == (256, 30) and int(negatives.max()) < vocab and int(negatives.min()) >= 0

    def mc_grad(correct):
        return param_grad(layer, lambda m, neg: m.sampled_loss(h, targets, neg, correct=correct).mean(), over=negatives)

    err = lambda g: float(jnp.linalg.norm(g - exact) / jnp.linalg.norm(exact))
    corrected, uncorrected = err(mc_grad(True)), err(mc_grad(False))
    assert corrected < 0.5 * uncorrected, (corrected, uncorrected)
    assert corrected < 0.3


def test_expected_counts_without_replacement():
    q = np.full(10, 0.1)
    np.testing.assert_allclose(S.expected_counts(q, 4, unique=True), 0.4)  # uniform: exactly K / V
    q = np.random.default_rng(0).dirichlet(np.ones(50))
    counts = S.expected_counts(q, 20, unique=True)
    assert np.isclose(counts.sum(), 20) and (counts <= 1).all() and (np.argsort(counts) == np.argsort(q)).all()


def test_ignored_targets_and_jit():
    vocab = 12
    counts = np.arange(1, vocab + 1)
    h, targets = hidden((2, 3)), jnp.array([[1, -1, 4], [11, 0, -1]])
    for name, kw in [("full", {}), ("sampled", {"num_sampled": 4}), ("hierarchical", {"counts": counts})]:
        layer = build(name, vocab, **kw)
        losses = jax.jit(lambda m, h, t: m(h, t, train=True, rngs=nnx.Rngs(dropout=3)))(layer, h, targets)
        assert losses.shape == (2, 3) and (losses[targets < 0] == 0).all() and (losses[targets >= 0] > 0).all()
        assert np.isclose(S.mean_loss(losses, targets), losses.sum() / 4)
        bad = jax.jit(lambda m, h, t: m(h, t))(layer, h, targets.at[0, 0].set(vocab))
        assert np.isnan(bad[0, 0]) and np.isfinite(bad[0, 1:]).all()  # out of range under jit: NaN


def test_bad_arguments_raise_naming_them():
    counts = np.ones(10)
    with pytest.raises(ValueError, match="'softermax'"):
        build("softermax", 10)
    layer = build("hierarchical", 10, counts=counts)
    with pytest.raises(ValueError, match="targets hold id 10"):
        layer(hidden((3,)), jnp.array([0, 10, 2]))
    with pytest.raises(ValueError, match="targets"):
        layer(hidden((3,)), jnp.array([0, 1]))
    with pytest.raises(TypeError, match="targets"):
        layer(hidden((2,)), jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="dim=8"):
        layer(jnp.ones((2, 5)), jnp.array([0, 1]))
    with pytest.raises(ValueError, match="targets hold id 12"):
        build("sampled", 10, num_sampled=3)(hidden((1,)), jnp.array([12]), train=True, rngs=jax.random.key(0))
    with pytest.raises(ValueError, match="'zipfian'"):
        build("sampled", 10, num_sampled=3, proposal="zipfian")
    with pytest.raises(ValueError, match="counts"):
        build("sampled", 10, num_sampled=3, proposal="unigram")
    with pytest.raises(ValueError, match="num_sampled=11"):
        build("sampled", 10, num_sampled=11)
    with pytest.raises(ValueError, match="'ternary'"):
        build("hierarchical", 10, tree="ternary", counts=counts)
    with pytest.raises(ValueError, match="counts"):
        build("hierarchical", 10, counts=np.ones(9))
    with pytest.raises(ValueError, match="rngs"):
        build("sampled", 10, num_sampled=3)(hidden((1,)), jnp.array([1]), train=True, rngs=None)
