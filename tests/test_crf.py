"""The linear-chain CRF (`jaxdl.layers.crf`) against brute-force enumeration of every tag sequence on tiny cases."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.layers import crf

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _random_case(seed, batch=3, seq=4, k=3, lengths=(4, 2, 1)):
    rng = np.random.default_rng(seed)
    em = rng.normal(size=(batch, seq, k)).astype(np.float32)
    trans = rng.normal(size=(k, k)).astype(np.float32)
    start = rng.normal(size=k).astype(np.float32)
    end = rng.normal(size=k).astype(np.float32)
    mask = np.arange(seq)[None, :] < np.asarray(lengths)[:, None]
    return em, mask, trans, start, end


def _path_score(em, path, trans, start, end):
    s = start[path[0]] + end[path[-1]] + sum(em[t, y] for t, y in enumerate(path))
    return s + sum(trans[a, b] for a, b in zip(path[:-1], path[1:], strict=True))


def _brute(em, n, trans, start, end):
    """(log Z, best path, marginals [n, K]) of one sequence of length n, enumerating all K**n paths in float64."""
    k = em.shape[-1]
    paths = list(itertools.product(range(k), repeat=n))
    scores = np.array([_path_score(em.astype(np.float64), p, trans, start, end) for p in paths])
    log_z = np.logaddexp.reduce(scores)
    probs = np.exp(scores - log_z)
    marg = np.zeros((n, k))
    for p, pr in zip(paths, probs, strict=True):
        marg[np.arange(n), list(p)] += pr
    return log_z, paths[int(np.argmax(scores))], marg


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_log_partition_viterbi_marginals_match_brute_force(seed):
    em, mask, trans, start, end = _random_case(seed)
    args = (jnp.asarray(mask), jnp.asarray(trans), jnp.asarray(start), jnp.asarray(end))
    log_z = np.asarray(crf.log_partition(jnp.asarray(em), *args))
    paths, best = crf.viterbi(jnp.asarray(em), *args)
    marg = np.asarray(crf.marginals(jnp.asarray(em), *args))
    for b, n in enumerate(mask.sum(1)):
        z, p, m = _brute(em[b], n, trans.astype(np.float64), start, end)
        np.testing.assert_allclose(log_z[b], z, rtol=1e-5)
        assert tuple(np.asarray(paths)[b, :n]) == p
        assert (np.asarray(paths)[b, n:] == 0).all()
        np.testing.assert_allclose(best[b], _path_score(em[b], p, trans, start, end), rtol=1e-5)
        np.testing.assert_allclose(marg[b, :n], m, atol=1e-5)
        np.testing.assert_allclose(marg[b, n:], 0.0)
        # log-likelihood of every path: exp sums to 1 over the enumeration
        all_paths = np.array(list(itertools.product(range(em.shape[-1]), repeat=n)))
        padded = np.zeros((len(all_paths), em.shape[1]), np.int32)
        padded[:, :n] = all_paths
        ll = crf.log_likelihood(
            jnp.broadcast_to(em[b], (len(all_paths), *em.shape[1:])),
            jnp.asarray(padded),
            jnp.broadcast_to(mask[b], (len(all_paths), mask.shape[1])),
            *args[1:],
        )
        np.testing.assert_allclose(np.exp(np.asarray(ll, np.float64)).sum(), 1.0, rtol=1e-5)


def test_padding_does_not_change_results_and_empty_sequence_is_zero():
    em, mask, trans, start, end = _random_case(3, batch=2, seq=6, k=4, lengths=(3, 0))
    p = (jnp.asarray(trans), jnp.asarray(start), jnp.asarray(end))
    z_pad = crf.log_partition(jnp.asarray(em), jnp.asarray(mask), *p)
    z_cut = crf.log_partition(jnp.asarray(em[:1, :3]), jnp.ones((1, 3), bool), *p)
    np.testing.assert_allclose(z_pad[0], z_cut[0], rtol=1e-6)
    assert float(z_pad[1]) == 0.0
    # garbage in the padding does not matter
    em2 = em.copy()
    em2[0, 3:] = 1e3
    np.testing.assert_allclose(crf.log_partition(jnp.asarray(em2), jnp.asarray(mask), *p), z_pad, rtol=1e-6)


def test_bio_constraints_exclude_invalid_paths():
    allowed, a_start, a_end = crf.bio_constraints(TAGS)
    assert not allowed[0, 2] and allowed[1, 2] and allowed[2, 2] and not allowed[3, 2] and allowed[3, 4]
    assert not a_start[2] and not a_start[4] and a_start.sum() == 3 and a_end.all()
    layer = crf.CRF(len(TAGS), tag_names=TAGS, constraints="bio")
    trans, start, end = layer.potentials()
    rng = np.random.default_rng(0)
    n = 4
    em = rng.normal(size=(1, n, len(TAGS))).astype(np.float32)
    em[0, :, 2] += 3.0  # I-PER everywhere would be best unconstrained
    mask = jnp.ones((1, n), bool)
    paths = list(itertools.product(range(len(TAGS)), repeat=n))
    valid = [p for p in paths if not crf.invalid_bio([TAGS[i] for i in p])]
    scores = [_path_score(em[0].astype(np.float64), p, np.zeros((5, 5)), np.zeros(5), np.zeros(5)) for p in valid]
    # log Z over the constrained CRF == logsumexp over the valid paths only
    np.testing.assert_allclose(layer.log_partition(jnp.asarray(em), mask)[0], np.logaddexp.reduce(scores), rtol=1e-5)
    best = np.asarray(layer.decode(jnp.asarray(em), mask))[0]
    assert tuple(best) == valid[int(np.argmax(scores))]
    assert not crf.invalid_bio([TAGS[i] for i in best])
    marg = np.asarray(layer.marginals(jnp.asarray(em), mask))
    np.testing.assert_allclose(marg.sum(-1), 1.0, atol=1e-5)
    assert marg[0, 0, 2] < 1e-6  # I-PER cannot start a sequence


def test_nll_is_differentiable_and_gradient_is_finite_with_constraints():
    layer = crf.CRF(len(TAGS), tag_names=TAGS, constraints="bio")
    em = jax.random.normal(jax.random.key(0), (2, 5, len(TAGS)))
    tags = jnp.asarray([[1, 2, 0, 3, 4], [0, 3, 4, 0, 0]])
    mask = jnp.asarray([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def loss(params, em):
        return nnx.merge(graphdef, params, rest).nll(em, tags, mask).mean()

    g_params, g_em = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, em)
    for leaf in jax.tree.leaves((g_params, g_em)):
        assert np.isfinite(np.asarray(leaf)).all()
    assert float(jnp.abs(g_em[1, 3:]).max()) == 0.0  # no gradient into padding


def test_tags_outside_the_tag_set_raise_naming_them():
    with pytest.raises(ValueError, match=r"tag 'B-FOO' at position 1 is not in the tag set"):
        crf.tag_ids(["O", "B-FOO"], TAGS)
    em = jnp.zeros((1, 3, 5))
    mask = jnp.ones((1, 3), bool)
    layer = crf.CRF(5)
    with pytest.raises(ValueError, match=r"tag id 7 at position \(0, 2\) is outside the tag set of 5 tags"):
        layer.nll(em, jnp.asarray([[0, 1, 7]]), mask)
    # an out-of-range id on padding is not an error
    layer.nll(em, jnp.asarray([[0, 1, 7]]), jnp.asarray([[1, 1, 0]], bool))
    with pytest.raises(ValueError, match=r"tag 'X-PER' is not a BIO tag"):
        crf.CRF(2, tag_names=["O", "X-PER"], constraints="bio")
    with pytest.raises(ValueError, match=r"emissions must be \[batch, seq, tags\]"):
        layer.log_partition(jnp.zeros((3, 5)), mask)
    with pytest.raises(ValueError, match=r"transitions/start/end must be"):
        crf.log_partition(em, mask, jnp.zeros((4, 4)), jnp.zeros(4), jnp.zeros(4))


def test_invalid_bio():
    assert not crf.invalid_bio(["O", "B-PER", "I-PER", "O", "B-LOC"])
    assert crf.invalid_bio(["I-PER"])
    assert crf.invalid_bio(["B-PER", "I-LOC"])
    assert crf.invalid_bio(["O", "I-LOC"])
