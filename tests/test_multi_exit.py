"""Multi-exit CNN (jaxdl.models.vision.multi_exit), its task (jaxdl.tasks.multi_exit) and early exit
(jaxdl.serve.cascade.route_exits / EarlyExit / exit_sweep).

References: exit k recomputed from the raw parameters with jax.lax primitives (conv_general_dilated, reduce_window,
a matmul), independent of the nnx modules; the FLOP count against a hand count; routing against a per-row loop
over scipy's softmax and against the two-model `route` (K = 2); the loss against optax per exit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.special
from flax import nnx

from jaxdl import models, tasks
from jaxdl.models.vision.multi_exit import exit_flops
from jaxdl.serve import cascade

CH = (4, 6, 8)


def _model(channels=CH, seed=0):
    with nnx.use_eager_sharding(False):
        cfg = dict(name="multi_exit", channels=channels)
        return models.make(cfg, input_shape=(12, 12, 1), num_classes=5, rngs=nnx.Rngs(seed))


def _x(n=7, seed=1):
    return jax.random.normal(jax.random.key(seed), (n, 12, 12, 1))


def _by_hand(model, x):
    """Every exit's logits from the raw parameters with lax primitives."""
    out, h = [], x
    for conv, head in zip(model.blocks, model.heads, strict=True):
        k, b = conv.kernel.get_value(), conv.bias.get_value()
        h = jax.lax.conv_general_dilated(h, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b
        h = jax.lax.reduce_window(jnp.maximum(h, 0), -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        out.append(h.reshape(len(h), -1) @ head.kernel.get_value() + head.bias.get_value())
    return out


def test_each_exit_is_the_network_truncated_at_its_block():
    model, x = _model(), _x()
    exits = nnx.jit(lambda m, x: m.exits(x))(model, x)
    ref = _by_hand(model, x)
    assert len(exits) == 3 and [e.shape for e in exits] == [(7, 5)] * 3
    for e, r in zip(exits, ref, strict=True):
        np.testing.assert_allclose(np.asarray(e), np.asarray(r), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(nnx.jit(lambda m, x: m(x))(model, x)), np.asarray(exits[-1]))
    h = x
    for k in range(3):  # the staged form (what EarlyExit runs) gives the same logits
        h, logits = model.stage(k, h)
        np.testing.assert_allclose(np.asarray(logits), np.asarray(exits[k]), rtol=1e-5, atol=1e-5)


def test_flop_count_matches_a_hand_count():
    # 28x28x1, channels 8/16/32, 10 classes. Convs (2 per multiply-add, pre-pool resolution):
    #   28*28*9*1*8 = 56,448 MACs;  14*14*9*8*16 = 225,792;  7*7*9*16*32 = 225,792.
    # Heads on the pooled maps 14x14x8 = 1,568, 7x7x16 = 784, 3x3x32 = 288 features -> 10 classes.
    conv = [2 * 56_448, 2 * 225_792, 2 * 225_792]
    head = [2 * 1_568 * 10, 2 * 784 * 10, 2 * 288 * 10]
    assert exit_flops((28, 28, 1), 10, (8, 16, 32), earlier_heads=False) == [
        conv[0] + head[0],
        conv[0] + conv[1] + head[1],
        sum(conv) + head[2],
    ]
    assert exit_flops((28, 28, 1), 10, (8, 16, 32)) == [
        conv[0] + head[0],
        conv[0] + conv[1] + head[0] + head[1],
        sum(conv) + sum(head),
    ]


def test_routing_endpoints_and_rule():
    model, x = _model(), _x(64)
    exits = [np.asarray(e) for e in nnx.jit(lambda m, x: m.exits(x))(model, x)]
    y = np.asarray(jax.random.randint(jax.random.key(2), (64,), 0, 5))
    logits, index = cascade.route_exits(exits, 0.0)  # every confidence is > 0: the first exit answers
    np.testing.assert_array_equal(logits, exits[0])
    assert (index == 0).all()
    logits, index = cascade.route_exits(exits, 1.0)  # no confidence is > 1: the last exit answers
    np.testing.assert_array_equal(logits, exits[-1])
    assert (index == 2).all()
    rows = cascade.exit_sweep(exits, y, [0.0, 1.0], costs=[1.0, 2.0, 3.0])
    assert rows[1]["accuracy"] == np.mean(exits[-1].argmax(1) == y) and rows[1]["exit_fractions"] == [0, 0, 1]
    assert rows[0]["accuracy"] == np.mean(exits[0].argmax(1) == y) and rows[0]["cost"] == 1.0

    conf = [scipy.special.softmax(e.astype(np.float64), axis=1).max(1) for e in exits]
    for tau in (0.25, 0.3, 0.4, 0.6):
        logits, index = cascade.route_exits(exits, tau)
        for i in range(64):
            want = next((k for k in range(2) if conf[k][i] > tau), 2)
            assert index[i] == want
            np.testing.assert_array_equal(logits[i], exits[want][i])
        frac = np.bincount(index, minlength=3) / 64
        (row,) = cascade.exit_sweep(exits, y, [tau], costs=[1.0, 2.0, 3.0])
        assert row["cost"] == pytest.approx(frac @ [1.0, 2.0, 3.0])
        # two exits: exactly the two-model cascade
        two, idx2 = cascade.route_exits(exits[:2], tau)
        ref, deferred = cascade.route(exits[0], exits[1], tau)
        np.testing.assert_array_equal(two, ref)
        np.testing.assert_array_equal(idx2 == 1, deferred)
    assert 0 < (cascade.route_exits(exits, 0.3)[1] > 0).mean() < 1  # the sweep above had rows at several exits


@pytest.mark.parametrize("pad_pow2", [False, True])
def test_early_exit_serving_form_equals_routing(pad_pow2):
    model, x = _model(), np.asarray(_x(37))
    stages = [nnx.jit(lambda m, h, k=k: m.stage(k, h)) for k in range(3)]
    stages = [lambda h, s=s: s(model, h) for s in stages]
    exits = [np.asarray(e) for e in nnx.jit(lambda m, x: m.exits(x))(model, x)]
    for tau in (0.0, 0.3, 0.5, 1.0):
        early = cascade.EarlyExit(stages, tau, pad_pow2=pad_pow2)
        out = early(x)
        want, index = cascade.route_exits(exits, tau)
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(early.last_exit, index)


def test_task_loss_is_the_weighted_sum_of_the_exits_cross_entropies():
    model, x = _model(), _x(16)
    y = jax.random.randint(jax.random.key(3), (16,), 0, 5)
    exits = model.exits(x)
    ce = [float(optax.softmax_cross_entropy_with_integer_labels(e, y).mean()) for e in exits]
    task = tasks.make(dict(name="multi_exit", weights=(0.5, 0.25, 1.0)))
    loss, metrics = task.loss(model, {"input": x, "label": y}, nnx.Rngs(0))
    assert float(loss) == pytest.approx(0.5 * ce[0] + 0.25 * ce[1] + ce[2], rel=1e-6)
    assert float(metrics["exit1_loss"]) == pytest.approx(ce[1], rel=1e-6)
    assert float(metrics["accuracy"]) == pytest.approx(float(np.mean(np.argmax(exits[2], 1) == y)))
    default, _ = tasks.make(dict(name="multi_exit")).loss(model, {"input": x, "label": y}, nnx.Rngs(0))
    assert float(default) == pytest.approx(sum(ce), rel=1e-6)


def test_bad_input_fails_naming_it():
    with pytest.raises(ValueError, match="3 entries for 2 exits"):
        with nnx.use_eager_sharding(False):
            tasks.make(dict(name="multi_exit", weights=(1, 1, 1))).build(
                dict(name="multi_exit", channels=(4, 4)), input_shape=(12, 12, 1), num_classes=5, rngs=nnx.Rngs(0)
            )
    with pytest.raises(ValueError, match="has no exits"):
        with nnx.use_eager_sharding(False):
            tasks.make(dict(name="multi_exit")).build(
                dict(name="mlp", hidden=(4,)), input_shape=(12, 12, 1), num_classes=5, rngs=nnx.Rngs(0)
            )
    with pytest.raises(ValueError, match="non-negative"):
        tasks.make(dict(name="multi_exit", weights=(1, -1)))
    with pytest.raises(ValueError, match="too small for 4 pooled blocks"):
        _model(channels=(2, 2, 2, 2))
    with pytest.raises(ValueError, match="tau=1.01"):
        cascade.route_exits([np.zeros((2, 3))], 1.01)
    with pytest.raises(ValueError, match="one shape"):
        cascade.route_exits([np.zeros((2, 3)), np.zeros((3, 3))], 0.5)
