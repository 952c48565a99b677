"""Magnitude pruning (`jaxdl.compress.prune`): exact per-layer / global counts against a numpy reference, the
Zhu & Gupta cubic schedule against its closed form, and masks holding pruned weights at exactly 0 through Adam
steps while the kept weights take exactly Adam's update."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.compress.prune import (
    cubic_schedule,
    magnitude_masks,
    magnitude_prune,
    prune_params,
    prune_state,
    sparsity_report,
)


def make_params(seed=0):
    """Two dense layers at different scales (the second 10x larger) and their biases."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {
        "l1": {"kernel": jax.random.normal(k1, (12, 16)), "bias": jnp.full((16,), 0.1)},
        "l2": {"kernel": 10.0 * jax.random.normal(k2, (16, 5)), "bias": jnp.full((5,), 0.1)},
    }


def loss_fn(params, x, y):
    h = jax.nn.relu(x @ params["l1"]["kernel"] + params["l1"]["bias"])
    logits = h @ params["l2"]["kernel"] + params["l2"]["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def test_per_layer_and_global_sparsity_are_exact():
    params = make_params()
    kernels = {"l1": np.asarray(params["l1"]["kernel"]), "l2": np.asarray(params["l2"]["kernel"])}
    pruned, _ = prune_params(params, 0.75, scope="layer")
    for name, w in kernels.items():
        k = round(0.75 * w.size)
        got = np.asarray(pruned[name]["kernel"])
        assert int((got == 0).sum()) == k
        # numpy reference: the k smallest |w| are exactly the ones zeroed, the others unchanged
        order = np.argsort(np.abs(w).ravel(), kind="stable")
        assert np.all(got.ravel()[order[:k]] == 0) and np.array_equal(got.ravel()[order[k:]], w.ravel()[order[k:]])
        np.testing.assert_array_equal(pruned[name]["bias"], params[name]["bias"])  # biases are not prunable
    pruned, _ = prune_params(params, 0.75, scope="global")
    allw = np.concatenate([w.ravel() for w in kernels.values()])
    k = round(0.75 * allw.size)
    threshold = np.sort(np.abs(allw))[k - 1]
    for name, w in kernels.items():
        np.testing.assert_array_equal(pruned[name]["kernel"], np.where(np.abs(w) > threshold, w, 0.0))
    report = sparsity_report(pruned)
    assert report["total"]["zeros"] == k and report["total"]["size"] == allw.size
    # the small-scale layer loses far more than the large one under a global ranking
    assert report["l1/kernel"]["sparsity"] > 0.9 > 0.5 > report["l2/kernel"]["sparsity"]
    assert set(report) == {"l1/kernel", "l2/kernel", "total"}
    with pytest.raises(ValueError, match="scope='row' is not one of"):
        magnitude_masks(params, 0.5, "row")


def test_cubic_schedule_matches_closed_form():
    s_i, s_f, t0, t_end, dt = 0.1, 0.9, 20, 120, 10
    schedule = cubic_schedule(s_f, begin_step=t0, end_step=t_end, initial_sparsity=s_i, update_every=dt)
    steps = np.arange(0, 200)
    got = np.asarray(jax.vmap(schedule)(jnp.asarray(steps)))
    for t, s in zip(steps, got, strict=True):
        if t < t0:
            want = s_i
        else:
            tq = min(t0 + (t - t0) // dt * dt, t_end)
            want = s_f + (s_i - s_f) * (1 - (tq - t0) / (t_end - t0)) ** 3
        assert abs(s - want) < 1e-6, (t, s, want)
    assert got[t0] == pytest.approx(s_i) and got[t_end] == pytest.approx(s_f) and got[-1] == pytest.approx(s_f)
    assert np.all(np.diff(got) >= -1e-6)  # monotone (up to float32 rounding at t0)
    with pytest.raises(ValueError, match="multiple of update_every=7"):
        cubic_schedule(0.5, begin_step=0, end_step=100, update_every=7)


def test_masks_keep_pruned_weights_zero_through_adam_steps():
    params = make_params(1)
    x = jax.random.normal(jax.random.key(2), (32, 12))
    y = jax.random.randint(jax.random.key(3), (32,), 0, 5)
    adam = optax.adam(1e-2)
    tx = optax.chain(adam, magnitude_prune(0.6, scope="layer"))
    state, ref_state = tx.init(params), adam.init(params)
    grad = jax.jit(jax.grad(loss_fn))
    first_masks = None
    for _ in range(6):
        g = grad(params, x, y)
        ref_updates, ref_state = adam.update(g, ref_state, params)  # Adam alone, same grads and moments
        updates, state = tx.update(g, state, params)
        new = optax.apply_updates(params, updates)
        masks = prune_state(state).masks
        first_masks = first_masks or masks
        for name in ("l1", "l2"):
            m = np.asarray(masks[name]["kernel"])
            w = np.asarray(new[name]["kernel"])
            assert np.array_equal(m, np.asarray(first_masks[name]["kernel"]))  # one-shot: fixed after step 0
            assert int((~m).sum()) == round(0.6 * m.size)
            assert np.all(w[~m] == 0.0)  # exactly zero, every step, although Adam's moments are nonzero there
            want = np.asarray(optax.apply_updates(params, ref_updates)[name]["kernel"])
            np.testing.assert_array_equal(w[m], want[m])  # kept weights: exactly Adam's step
            np.testing.assert_array_equal(new[name]["bias"], optax.apply_updates(params, ref_updates)[name]["bias"])
        params = new
    assert float(loss_fn(params, x, y)) < float(loss_fn(make_params(1), x, y))  # still trains


def test_gradual_global_pruning_follows_the_schedule_and_is_monotone():
    params = make_params(4)
    x = jax.random.normal(jax.random.key(5), (32, 12))
    y = jax.random.randint(jax.random.key(6), (32,), 0, 5)
    schedule = cubic_schedule(0.8, begin_step=2, end_step=10, update_every=2)
    tx = optax.chain(optax.adam(1e-2), magnitude_prune(schedule, scope="global"))
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss_fn)(params, x, y), state, params)
        return optax.apply_updates(params, updates), state

    total = 12 * 16 + 16 * 5
    prev = None
    for t in range(14):
        params, state = step(params, state)
        zeros = sparsity_report(params)["total"]["zeros"]
        assert zeros == round(float(schedule(t)) * total), (t, zeros)  # exact count at the scheduled sparsity
        masks = np.concatenate([np.asarray(m).ravel() for m in jax.tree.leaves(prune_state(state).masks)])
        if prev is not None:
            assert not np.any(masks & ~prev)  # a pruned weight never comes back
        prev = masks
    assert zeros == round(0.8 * total)
