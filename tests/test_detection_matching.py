"""Hungarian matching (jaxdl.layers.matching): scipy's exact matching and our JAX auction matcher against brute
force over every injective row -> column map of small cost matrices."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.layers import matching


def brute_force(cost):
    """(best total, second-best total, best columns) over all injective maps rows -> columns."""
    m, q = cost.shape
    totals = sorted((sum(cost[i, c] for i, c in enumerate(p)), p) for p in itertools.permutations(range(q), m))
    return totals[0][0], (totals[1][0] if len(totals) > 1 else np.inf), np.array(totals[0][1])


def test_hungarian_and_auction_equal_brute_force():
    rng = np.random.default_rng(0)
    auction = jax.jit(matching.auction, static_argnames=("eps",))
    checked = 0
    for _ in range(40):
        m = int(rng.integers(1, 6))
        q = int(rng.integers(m, 7))
        cost = rng.uniform(0, 1, (m, q)).astype(np.float32)
        if rng.uniform() < 0.3:  # DETR-like costs: a few classes and box terms, large spread
            cost = cost * 5 + rng.integers(0, 3, (m, q))
        best, second, cols = brute_force(cost.astype(np.float64))
        h = matching.hungarian(cost)
        assert sum(cost[i, c] for i, c in enumerate(h)) == pytest.approx(best, abs=1e-6)
        a = np.asarray(auction(jnp.asarray(cost), eps=1e-5))
        assert len(set(a.tolist())) == m and (a >= 0).all()
        total = sum(float(cost[i, c]) for i, c in enumerate(a))
        assert total <= best + m * 1e-5 + 1e-5  # the auction's guarantee
        if second - best > m * 1e-5 + 1e-5:  # a unique optimum beyond the guarantee: the same matching
            np.testing.assert_array_equal(a, cols)
            np.testing.assert_array_equal(h, cols)
            checked += 1
    assert checked >= 30


def test_auction_integer_costs_exact_and_batched():
    rng = np.random.default_rng(1)
    costs = rng.integers(0, 4, (16, 4, 6)).astype(np.float32)  # many ties: compare totals
    got = np.asarray(jax.jit(jax.vmap(lambda c: matching.auction(c, eps=0.2)))(jnp.asarray(costs)))
    for cost, a in zip(costs, got, strict=True):
        best, _, _ = brute_force(cost.astype(np.float64))
        assert len(set(a.tolist())) == 4
        assert sum(cost[i, c] for i, c in enumerate(a)) == best  # eps < 1/M: exact for integer costs


def test_bad_shapes_fail():
    with pytest.raises(ValueError, match="rows <= cols"):
        matching.hungarian(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="3 rows > 2 columns"):
        matching.auction(jnp.zeros((3, 2)))
