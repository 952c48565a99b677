"""Cascades (`jaxdl.serve.cascade`): τ = 0 is the cheap model and τ = 1 the expensive one, in between every row comes
from the model the rule names (checked against the two models' own outputs), the serving form runs the expensive
model only on the deferred rows, XLA's FLOP count of a matmul against 2·d·k, the sweep's cost formula, bad input."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from jaxdl.serve import cascade

D, K, N = 6, 4, 300


def _models():
    rng = np.random.default_rng(0)
    w_cheap = rng.normal(size=(D, K)).astype(np.float32)
    w1, w2 = rng.normal(size=(D, 32)).astype(np.float32), rng.normal(size=(32, K)).astype(np.float32)
    cheap = lambda x: jnp.asarray(x) @ w_cheap
    expensive = lambda x: jnp.tanh(jnp.asarray(x) @ w1) @ w2
    x = rng.normal(size=(N, D)).astype(np.float32) * np.linspace(0.1, 3, N, dtype=np.float32)[:, None]
    return cheap, expensive, x


def test_endpoints_and_rule_match_the_two_models():
    cheap, expensive, x = _models()
    c, e = np.asarray(cheap(x)), np.asarray(expensive(x))
    np.testing.assert_array_equal(cascade.route(c, e, 0.0)[0], c)
    np.testing.assert_array_equal(cascade.route(c, e, 1.0)[0], e)
    conf = scipy.special.softmax(c.astype(np.float64), axis=1).max(1)  # independent of the module's formula
    np.testing.assert_allclose(cascade.confidence(c), conf, rtol=1e-12)
    for tau in (0.3, 0.5, 0.7, 0.9):
        out, deferred = cascade.route(c, e, tau)
        cheap_rows = conf > tau
        assert 0 < cheap_rows.sum() < N, tau  # the inputs' scales spread confidences over the whole range
        np.testing.assert_array_equal(deferred, ~cheap_rows)
        np.testing.assert_array_equal(out[cheap_rows], c[cheap_rows])
        np.testing.assert_array_equal(out[~cheap_rows], e[~cheap_rows])


def test_serving_cascade_runs_expensive_only_on_deferred_rows():
    cheap, expensive, x = _models()
    seen = []
    counting = lambda v: (seen.append(len(v)), expensive(v))[1]
    c, e = np.asarray(cheap(x)), np.asarray(expensive(x))
    for tau in (0.0, 0.6, 1.0):
        seen.clear()
        cas = cascade.Cascade(cheap, counting, tau)
        out = cas(x)
        want, deferred = cascade.route(c, e, tau)
        np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)  # expensive on a sub-batch: same math
        np.testing.assert_array_equal(cas.last_deferred, deferred)
        assert sum(seen) == deferred.sum()
        seen.clear()
        padded = cascade.Cascade(cheap, counting, tau, pad_pow2=True)
        np.testing.assert_allclose(padded(x), want, rtol=1e-6, atol=1e-6)
        if deferred.any():
            n = int(deferred.sum())
            assert seen == [1 << (n - 1).bit_length()] and seen[0] < 2 * n


def test_flops_and_sweep_cost():
    w = jnp.ones((D, K))
    assert cascade.flops_per_example(lambda x: x @ w, np.ones((8, D), np.float32)) == pytest.approx(2 * D * K)
    cheap, expensive, x = _models()
    c, e = np.asarray(cheap(x)), np.asarray(expensive(x))
    y = e.argmax(1)  # labels the expensive model gets right: accuracy must rise to 1 at tau = 1
    rows = cascade.sweep(c, e, y, [0.0, 0.5, 1.0], cost_cheap=2.0, cost_expensive=10.0)
    assert rows[0]["deferred"] == 0 and rows[0]["cost"] == 2.0
    assert rows[0]["accuracy"] == pytest.approx(np.mean(c.argmax(1) == y))
    assert rows[2]["deferred"] == 1 and rows[2]["cost"] == 12.0 and rows[2]["accuracy"] == 1.0
    frac = np.mean(~(scipy.special.softmax(c.astype(np.float64), 1).max(1) > 0.5))
    assert rows[1]["cost"] == pytest.approx(2.0 + 10.0 * frac)


def test_bad_input():
    c = np.zeros((5, 3))
    for tau in (-0.1, 1.01, float("nan")):
        with pytest.raises(ValueError, match="tau"):
            cascade.route(c, c, tau)
        with pytest.raises(ValueError, match="tau"):
            cascade.Cascade(lambda v: v, lambda v: v, tau)
    with pytest.raises(ValueError, match="same shape"):
        cascade.route(c, np.zeros((4, 3)), 0.5)
    with pytest.raises(ValueError, match="labels"):
        cascade.sweep(c, c, np.zeros(4), [0.5], cost_cheap=1, cost_expensive=1)
    with pytest.raises(ValueError, match="classes"):
        cascade.confidence(np.zeros(5))


def test_jax_arrays_accepted():
    cheap, expensive, x = _models()
    out, _ = cascade.route(cheap(x), expensive(x), 0.5)  # jax arrays in, numpy out
    assert isinstance(out, np.ndarray) and out.shape == (N, K)
