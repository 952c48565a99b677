"""jaxdl.decode: top-k / top-p filters, sampling frequencies, greedy generation against a cache-free reference,
eos handling, and beam search (beam 1 = greedy; a wide beam finds the brute-force best sequence under the GNMT
length penalty) on a tiny GPT whose KV-cache rows beam search must reorder; a tiny GPT trained with optax memorizes
a sentence, regenerates it greedily, and generates the same after an orbax save/load."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from baselines import MARGIN, entropy
from flax import nnx

from jaxdl import decode
from jaxdl.models.language.gpt import Model

VOCAB = 5


def make_gpt(seed, **kw):
    kw = dict(dim=32, heads=4, num_kv_heads=2, mlp_dim=64) | kw
    with nnx.use_eager_sharding(False):
        return Model(**kw, rngs=nnx.Rngs(seed))


@pytest.fixture(scope="module")
def tiny():
    """A 2-layer GPT over 5 tokens, untied head (logits ~ N(0, 1): peaked enough that sequences do not tie)."""
    model = make_gpt(3, input_shape=(16,), num_classes=VOCAB, tie_embeddings=False)
    step_fn, params = decode.module_step(model)
    return model, step_fn, params, nnx.jit(lambda m, x: m(x))


PROMPT = jnp.array([[1, 3, 2], [4, 4, 0]], jnp.int32)


def test_top_p_keeps_the_smallest_set_with_mass_at_least_p():
    probs = jnp.array([0.15, 0.5, 0.05, 0.3])  # sorted: 0.5 (1), 0.3 (3), 0.15 (0), 0.05 (2)
    logits = jnp.log(probs)[None]
    keep = lambda p: np.flatnonzero(np.asarray(decode.top_p_mask(logits, p)[0])).tolist()
    assert keep(0.3) == [1]  # 0.5 alone is >= 0.3
    assert keep(0.5) == [1]
    assert keep(0.6) == [1, 3]
    assert keep(0.75) == [1, 3]
    assert keep(0.9) == [0, 1, 3]
    assert keep(0.97) == [0, 1, 2, 3]
    assert keep(1.0) == [0, 1, 2, 3]
    np.testing.assert_array_equal(decode.top_k_mask(logits, 2)[0], [False, True, False, True])
    with pytest.raises(ValueError, match="top_p"):
        decode.top_p_mask(logits, 0.0)
    with pytest.raises(ValueError, match="top_k"):
        decode.top_k_mask(logits, 5)


def test_sampling_frequencies_follow_the_filtered_tempered_softmax():
    logits = jnp.array([[2.0, 1.0, 0.0, -1.0, 0.5]])
    keys = jax.random.split(jax.random.key(0), 20_000)

    def freq(**kw):
        toks = jax.vmap(lambda k: decode.sample_logits(logits, k, **kw)[0])(keys)
        return np.bincount(np.asarray(toks), minlength=5) / len(keys)

    expected = np.asarray(jax.nn.softmax(logits[0] / 0.7))
    np.testing.assert_allclose(freq(temperature=0.7), expected, atol=0.015)
    top3 = np.where(np.arange(5) < 2, np.exp(logits[0]), 0.0) + np.where(np.arange(5) == 4, np.exp(0.5), 0.0)
    np.testing.assert_allclose(freq(temperature=1.0, top_k=3), top3 / top3.sum(), atol=0.015)
    # softmax(logits) = [.53, .20, .07, .03, .12]: the 0.7-nucleus is {0, 1}
    np.testing.assert_allclose(freq(temperature=1.0, top_p=0.7)[2:], 0.0)
    assert freq(temperature=1.0, top_k=1)[0] == 1.0


def reference_greedy(forward, model, prompt, n):
    """Greedy decoding without a cache: the full forward pass on the growing sequence (right-padded to a fixed
    length, which the causal mask makes harmless, so it compiles once)."""
    p = prompt.shape[1]
    seq = jnp.zeros((prompt.shape[0], p + n), jnp.int32).at[:, :p].set(prompt)
    for t in range(p, p + n):
        seq = seq.at[:, t].set(jnp.argmax(forward(model, seq)[:, t - 1], -1).astype(jnp.int32))
    return np.asarray(seq[:, p:])


def run_generate(tiny, n, **kw):
    model, step_fn, params, _ = tiny
    cache = model.init_cache(PROMPT.shape[0], PROMPT.shape[1] + n - 1)
    return np.asarray(decode.generate(step_fn, params, PROMPT, cache, max_new_tokens=n, **kw))


def test_greedy_and_top_k_1_match_the_cache_free_reference(tiny):
    model, _, _, forward = tiny
    n = 8
    expected = reference_greedy(forward, model, PROMPT, n)
    np.testing.assert_array_equal(run_generate(tiny, n), expected)
    sampled = run_generate(tiny, n, temperature=1.3, top_k=1, key=jax.random.key(4))
    np.testing.assert_array_equal(sampled, expected)
    # real sampling differs somewhere (and is reproducible per key)
    a = run_generate(tiny, n, temperature=1.0, key=jax.random.key(1))
    np.testing.assert_array_equal(a, run_generate(tiny, n, temperature=1.0, key=jax.random.key(1)))
    assert not np.array_equal(a, expected)
    with pytest.raises(ValueError, match="key"):
        run_generate(tiny, n, temperature=1.0)


def test_eos_stops_a_row_and_pads_the_rest(tiny):
    n = 8
    greedy = run_generate(tiny, n)
    eos = int(greedy[0, 2])  # row 0 emits this token at step 2 (maybe earlier too)
    first = [int(np.argmax(row == eos)) if (row == eos).any() else n for row in greedy]
    out = run_generate(tiny, n, eos_id=eos, pad_id=-1)
    for row, stop, g in zip(out, first, greedy, strict=True):
        np.testing.assert_array_equal(row[: stop + 1], g[: stop + 1])  # identical up to and including eos
        assert (row[stop + 1 :] == -1).all()


def run_beam(tiny, k, n, **kw):
    model, step_fn, params, _ = tiny
    cache = model.init_cache(PROMPT.shape[0], PROMPT.shape[1] + n - 1)
    seqs, scores = decode.beam_search(step_fn, params, PROMPT, cache, beam_size=k, max_new_tokens=n, **kw)
    return np.asarray(seqs), np.asarray(scores)


def test_beam_1_is_greedy(tiny):
    n = 6
    seqs, scores = run_beam(tiny, 1, n, alpha=0.0)
    np.testing.assert_array_equal(seqs[:, 0], run_generate(tiny, n))
    assert np.isfinite(scores).all()


def brute_force_scores(tiny, n, eos, alpha):
    """Every complete hypothesis (eos only at its end, or n tokens) and its length-penalized score, per prompt."""
    model, _, _, forward = tiny
    hyps = [s for L in range(1, n + 1) for s in itertools.product(range(VOCAB), repeat=L)
            if eos not in s[:-1] and (L == n or s[-1] == eos)]  # fmt: skip
    out = []
    for prompt in np.asarray(PROMPT):
        padded = np.array([list(prompt) + list(h) + [0] * (n - len(h)) for h in hyps], np.int32)
        logp = np.asarray(jax.nn.log_softmax(forward(model, jnp.asarray(padded))))  # causal: padding is harmless
        p = len(prompt)
        scores = []
        for h, lp in zip(hyps, logp, strict=True):
            total = sum(lp[p - 1 + t, tok] for t, tok in enumerate(h))
            scores.append(total / ((5.0 + len(h)) / 6.0) ** alpha)
        out.append(dict(zip(hyps, scores, strict=True)))
    return out


def test_wide_beam_finds_the_brute_force_best_sequence(tiny):
    n, eos, alpha = 3, 0, 0.6
    truth = brute_force_scores(tiny, n, eos, alpha)
    seqs, scores = run_beam(tiny, 16, n, eos_id=eos, alpha=alpha, pad_id=-1)  # 16 beams: nothing is pruned
    small_seqs, small_scores = run_beam(tiny, 3, n, eos_id=eos, alpha=alpha, pad_id=-1)
    for row in range(PROMPT.shape[0]):
        ranked = sorted(truth[row].items(), key=lambda kv: -kv[1])
        assert ranked[0][1] - ranked[1][1] > 1e-4  # a unique best
        hyp = lambda s: tuple(int(t) for t in s if t != -1)
        assert hyp(seqs[row, 0]) == ranked[0][0]
        np.testing.assert_allclose(scores[row], [s for _, s in ranked[:16]], atol=1e-5)  # the 16 best, in order
        # a narrow beam returns real hypotheses with their true scores, best first
        for s, sc in zip(small_seqs[row], small_scores[row], strict=True):
            np.testing.assert_allclose(sc, truth[row][hyp(s)], atol=1e-5)
        assert np.all(np.diff(small_scores[row]) <= 0)


def second_order_markov_step(table, tokens, cache):
    """A step function outside NNX: next-token logits table[two tokens back, last token]; the cache holds the two
    last tokens per row ([rows], batch axis 0), so a wrongly reordered cache changes the scores."""
    prev2, prev1 = cache["prev2"], cache["prev1"]
    logits = []
    for j in range(tokens.shape[1]):
        prev2, prev1 = prev1, tokens[:, j]
        logits.append(table[prev2, prev1])
    return jnp.stack(logits, 1), {"prev2": prev2, "prev1": prev1}


def test_beam_search_on_a_plain_step_function_with_batch_axis_0():
    v, n = 3, 3
    table = 2.0 * jax.random.normal(jax.random.key(0), (v, v, v))
    prompt = jnp.array([[0, 1], [2, 2]], jnp.int32)
    cache = {"prev2": jnp.zeros((2,), jnp.int32), "prev1": jnp.zeros((2,), jnp.int32)}
    ls = np.asarray(jax.nn.log_softmax(table))
    run = lambda k: decode.beam_search(
        second_order_markov_step, table, prompt, cache, beam_size=k, max_new_tokens=n, alpha=0.0, batch_axis=0
    )
    for k in (9, 2):  # 9 beams: exhaustive; 2 beams: rows are pruned and reordered
        seqs, scores = run(k)
        for row, (a, b) in enumerate(np.asarray(prompt)):
            truth = {
                s: ls[a, b, s[0]] + ls[b, s[0], s[1]] + ls[s[0], s[1], s[2]]
                for s in itertools.product(range(v), repeat=n)
            }
            for s, sc in zip(np.asarray(seqs[row]), np.asarray(scores[row]), strict=True):
                np.testing.assert_allclose(sc, truth[tuple(int(t) for t in s)], atol=1e-5)
            if k == 9:
                np.testing.assert_allclose(scores[row], sorted(truth.values(), reverse=True)[:9], atol=1e-5)


TEXT = b"the quick brown fox jumps over the lazy dog. "


def test_overfits_tiny_corpus_then_regenerates_it_and_survives_save_load(tmp_path):
    text = np.frombuffer(TEXT * 3, np.uint8)
    chars = sorted(set(TEXT))
    ids = np.array([chars.index(c) for c in text], np.int32)
    length = 32
    windows = np.stack([ids[i : i + length + 1] for i in range(len(TEXT))])  # every rotation of the sentence
    model = make_gpt(seed=0, input_shape=(length,), num_classes=len(chars))
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, opt, batch):
        loss_fn = lambda m: optax.softmax_cross_entropy_with_integer_labels(m(batch[:, :-1]), batch[:, 1:]).mean()
        loss, g = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, g)
        return loss

    losses = [float(train_step(model, opt, jnp.asarray(windows))) for _ in range(200)]
    # from ~ln(28 chars) to memorized, far below the targets' unigram entropy (the best loss without context)
    floor = entropy(windows[:, 1:])
    assert losses[-1] < 0.1 < floor - MARGIN and losses[0] > floor, (losses[0], losses[-1], floor)

    prompt_text = b"the quick "
    prompt = jnp.array([[chars.index(c) for c in prompt_text]], jnp.int32)
    n_new = length - prompt.shape[1]

    def greedy(m):
        step_fn, params = decode.module_step(m)
        cache = m.init_cache(1, prompt.shape[1] + n_new - 1)
        return np.asarray(decode.generate(step_fn, params, prompt, cache, max_new_tokens=n_new))[0]

    out = greedy(model)
    expected = (TEXT * 2)[len(prompt_text) : len(prompt_text) + n_new]
    assert bytes(chars[i] for i in out) == expected

    # save (nnx.state -> orbax) -> load into a fresh model with other weights -> the same generation
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(tmp_path / "gpt", nnx.state(model))
    ckpt.wait_until_finished()
    fresh = make_gpt(seed=5, input_shape=(length,), num_classes=len(chars))
    assert not np.array_equal(greedy(fresh), out)
    graphdef, abstract = nnx.split(fresh)
    restored = nnx.merge(graphdef, ckpt.restore(tmp_path / "gpt", abstract))
    np.testing.assert_array_equal(greedy(restored), out)
