"""Optimizer factory: every optimizer/schedule trains a tiny problem; schedules, masks, decay, clipping, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl import optim

LRS = {"sgd": 0.3, "momentum": 0.05, "nesterov": 0.05, "adam": 0.05, "adamw": 0.05, "adagrad": 0.3,
       "rmsprop": 0.01, "adafactor": 0.05, "lion": 0.01}  # fmt: skip


class Tiny(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(8, 16, rngs=rngs)
        self.norm = nnx.LayerNorm(16, rngs=rngs)
        self.l2 = nnx.Linear(16, 1, rngs=rngs)

    def __call__(self, x):
        return self.l2(nnx.relu(self.norm(self.l1(x))))


def _cfg(**kw):
    c = optim.defaults()
    for k, v in kw.items():
        c[k] = v
    return c


def _train(cfg, steps=300):
    model = Tiny(nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    x = jax.random.normal(jax.random.key(1), (64, 8))
    y = jnp.sin(x @ jnp.arange(8.0) / 4)[:, None]
    tx, _ = optim.make_optimizer(cfg, steps)

    def loss_fn(p):
        return jnp.mean((nnx.merge(graphdef, p)(x) - y) ** 2)

    @jax.jit
    def run(params):
        def body(carry, _):
            p, s = carry
            loss, g = jax.value_and_grad(loss_fn)(p)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss

        (p, _), losses = jax.lax.scan(body, (params, tx.init(params)), None, length=steps)
        return losses, loss_fn(p)

    losses, final = run(params)
    return float(losses[0]), float(final), float(jnp.var(y))  # var(y): the loss of the best constant prediction


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
@pytest.mark.parametrize("schedule", ["constant", "warmup_cosine", "step", "multistep", "linear"])
def test_every_optimizer_and_schedule_decreases_the_loss(name, schedule):
    cfg = _cfg(name=name, lr=LRS[name], schedule=schedule, warmup_steps=10, step_size=100, boundaries=(100,),
               decay_factor=0.5, weight_decay=1e-4, clip_norm=10.0)  # fmt: skip
    first, final, constant = _train(cfg)
    # it fits x, not just the mean of y: half the variance a constant prediction leaves (R^2 > 0.5)
    assert final < 0.5 * constant < first, (name, schedule, first, final, constant)


def test_schedules_match_closed_forms():
    total = 100
    s = optim.make_schedule(_cfg(lr=1.0, schedule="warmup_cosine", warmup_steps=10, end_lr_factor=0.1), total)
    np.testing.assert_allclose([s(0), s(5), s(10), s(100)], [0.0, 0.5, 1.0, 0.1], atol=1e-6)
    np.testing.assert_allclose(s(55), 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 45 / 90)), atol=1e-6)
    s = optim.make_schedule(_cfg(lr=1.0, schedule="step", step_size=30, decay_factor=0.5), total)
    np.testing.assert_allclose([s(29), s(30), s(59), s(60)], [1.0, 0.5, 0.5, 0.25], atol=1e-7)
    s = optim.make_schedule(_cfg(lr=1.0, schedule="multistep", boundaries=(40, 80), decay_factor=0.1), total)
    np.testing.assert_allclose([s(39), s(40), s(79), s(80)], [1.0, 0.1, 0.1, 0.01], atol=1e-7)
    s = optim.make_schedule(_cfg(lr=2.0, schedule="linear", end_lr_factor=0.0), total)
    np.testing.assert_allclose([s(0), s(50), s(100)], [2.0, 1.0, 0.0], atol=1e-6)
    s = optim.make_schedule(_cfg(lr=1.0, schedule="multistep", boundaries=(40,), warmup_steps=20), total)
    np.testing.assert_allclose([s(10), s(39), s(40)], [0.5, 1.0, 0.1], atol=1e-6)


def test_decay_mask_skips_biases_norms_and_vectors():
    _, params = nnx.split(Tiny(nnx.Rngs(0)), nnx.Param)
    mask = optim.decay_mask(params)
    assert mask["l1"]["kernel"].get_value() is True and mask["l2"]["kernel"].get_value() is True
    assert mask["l1"]["bias"].get_value() is False
    assert mask["norm"]["scale"].get_value() is False and mask["norm"]["bias"].get_value() is False
    assert optim.decay_mask({"conv": {"kernel": jnp.ones((3, 3, 2, 4))}, "layer_norm": {"w": jnp.ones((4, 4))}}) == {
        "conv": {"kernel": True},
        "layer_norm": {"w": False},
    }


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_weight_decay_shrinks_kernels_not_biases(name):
    """With zero gradients only the decay moves the weights: adamw's decoupled decay (Adam's update of a zero
    gradient is 0) and sgd's L2 term (gradient + wd * w, times lr) both give w <- (1 - lr * wd) w per step."""
    lr, wd = 0.1, 0.5
    params = {"dense": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones((4,))}}
    tx, _ = optim.make_optimizer(_cfg(name=name, lr=lr, weight_decay=wd), 10)
    zero = jax.tree.map(jnp.zeros_like, params)
    state = tx.init(params)
    for step in (1, 2):
        updates, state = tx.update(zero, state, params)
        params = optax.apply_updates(params, updates)
        np.testing.assert_allclose(params["dense"]["kernel"], (1 - lr * wd) ** step, rtol=1e-6)  # 0.95, 0.9025
        np.testing.assert_array_equal(params["dense"]["bias"], 1.0)  # masked out: exactly untouched


def test_clipping_rescales_large_gradients_and_keeps_small_ones():
    """clip_by_global_norm(c) then sgd(lr): g -> -lr * g * min(1, c / |g|)."""
    params = {"w": jnp.zeros((10,))}
    tx, _ = optim.make_optimizer(_cfg(name="sgd", lr=0.5, clip_norm=1.0), 10)
    # |g| = 1e6 * sqrt(10) > 1: rescaled to norm 1, same direction -> every entry -0.5 / sqrt(10)
    updates, _ = tx.update({"w": jnp.full((10,), 1e6)}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.5 / np.sqrt(10), rtol=1e-6)
    # |g| = 0.19 < 1: not clipped -> -0.5 * g
    g = jnp.linspace(-0.1, 0.1, 10)
    updates, _ = tx.update({"w": g}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.5 * g, rtol=1e-6)


@pytest.mark.parametrize(
    "kw,key",
    [
        (dict(name="adamm"), "config.optim.name"),
        (dict(schedule="cosine"), "config.optim.schedule"),
        (dict(lr=0.0), "config.optim.lr"),
        (dict(warmup_steps=500), "config.optim.warmup_steps"),
        (dict(schedule="multistep", boundaries=(50, 20)), "config.optim.boundaries"),
        (dict(schedule="step", step_size=0), "config.optim.step_size"),
        (dict(weight_decay=-1.0), "config.optim.weight_decay"),
        (dict(wd_mask="some"), "config.optim.wd_mask"),
        (dict(clip_norm=-1.0), "config.optim.clip_norm"),
    ],
)
def test_bad_config_names_the_key(kw, key):
    with pytest.raises(ValueError, match=key):
        optim.make_optimizer(_cfg(**kw), 100)
