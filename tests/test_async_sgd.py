"""Asynchronous SGD (task async_sgd) through the trainer's own jitted step, on real data (sklearn digits).

References: τ = 0 equals the `classify` task's synchronous SGD step on the same minibatches; with a fixed or random
staleness the update applied at step t equals a direct re-computation η·s_t·∇L(θ_{max(0, t−τ_t)}; batch_t) from the
parameter history; the staleness sampler's frequencies match the closed-form laws; bad options fail naming them."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl import config as config_lib
from jaxdl import models, tasks
from jaxdl.state import make_optimizers, make_train_step
from jaxdl.tasks import async_sgd

LR, BATCH = 0.5, 16


def setup(data_dir, **task):
    c = config_lib.base()
    c.data.name, c.data.data_dir = "digits", data_dir
    c.model = ml_collections.ConfigDict({"name": "mlp", "hidden": (16,)})
    c.task = ml_collections.ConfigDict(dict(name="async_sgd", dataset="digits", data_dir=data_dir, **task))
    c.optim.name, c.optim.lr, c.optim.schedule, c.optim.warmup_steps, c.optim.weight_decay = (
        "sgd", LR, "constant", 0, 0.0,
    )  # fmt: skip
    c.train.steps = 10
    t = tasks.make(c.task)
    with nnx.use_eager_sharding(False):
        model = models.make(c.model, input_shape=(28, 28, 1), num_classes=10, rngs=nnx.Rngs(params=0))
    return c, t, model


def run(data_dir, steps: int, **task):
    """Params after every step [θ_0, …, θ_steps], per-step metrics, and what a reference needs."""
    c, t, model = setup(data_dir, batch_size=BATCH, **task)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx, schedule = make_optimizers(c, t)
    state = dict(params=params, rest=rest, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32))
    state |= dict(rng=jax.random.key_data(jax.random.key(0)), carry=t.init_carry(jax.random.key(7), model))
    step = jax.jit(make_train_step(graphdef, tx, schedule, c, t))
    history, metrics = [params], []
    for _ in range(steps):
        state, m = step(state, {})
        history.append(state["params"])
        metrics.append(jax.device_get(m))
    apply = lambda p, x: nnx.merge(graphdef, p, rest)(x, train=False)
    batches = [t.host.fetch(np.asarray(t.rows(state["carry"]["data_key"], i))) for i in range(steps)]
    return history, metrics, apply, batches, (c, t, graphdef, rest)


def xent(apply):
    return lambda p, x, y: jnp.mean(optax.softmax_cross_entropy_with_integer_labels(apply(p, x), y))


def assert_trees_close(a, b, atol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=atol)


def test_tau_zero_is_synchronous_sgd(data_dir):
    steps = 5
    history, _, _, batches, (c, _, graphdef, rest) = run(data_dir, steps, tau=0)
    c.task = ml_collections.ConfigDict(dict(name="classify"))
    sync = tasks.make(c.task)
    tx, schedule = make_optimizers(c, sync)
    params = history[0]
    state = dict(params=params, rest=rest, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32))
    state |= dict(rng=jax.random.key_data(jax.random.key(0)))
    step = jax.jit(make_train_step(graphdef, tx, schedule, c, sync))
    for i, b in enumerate(batches):
        state, _ = step(state, b)
        assert_trees_close(state["params"], history[i + 1])


@pytest.mark.parametrize(
    "task",
    [
        dict(staleness="fixed", tau=3),
        dict(staleness="fixed", tau=3, lr_scaling="inverse"),
        dict(staleness="uniform", tau=4),
    ],
    ids=["fixed", "fixed-inverse-lr", "uniform"],
)
def test_update_is_the_gradient_at_stale_parameters(data_dir, task):
    steps = 8
    history, metrics, apply, batches, _ = run(data_dir, steps, **task)
    grad = jax.jit(jax.grad(xent(apply)))
    taus = [int(m["staleness"]) for m in metrics]
    for t in range(steps):
        if task["staleness"] == "fixed":
            assert taus[t] == min(t, task["tau"])  # no θ before θ_0: the first steps read θ_0
        assert 0 <= taus[t] <= min(t, task["tau"])
        scale = 1.0 / max(taus[t], 1) if task.get("lr_scaling") == "inverse" else 1.0
        assert float(metrics[t]["grad_scale"]) == pytest.approx(scale)
        g = grad(history[t - taus[t]], batches[t]["input"], batches[t]["label"])
        expected = jax.tree.map(lambda p, g, s=scale: p - LR * s * g, history[t], g)
        assert_trees_close(history[t + 1], expected)
    if task["staleness"] == "uniform":
        assert len(set(taus[4:])) > 1  # the draws vary
    # the stale gradient is not the fresh one (the check above could not pass with τ ignored)
    t = steps - 1
    fresh = jax.tree.map(
        lambda p, g: p - LR * g, history[t], grad(history[t], batches[t]["input"], batches[t]["label"])
    )
    diff = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(fresh), jax.tree.leaves(history[t + 1]), strict=True)
    )
    assert diff > 1e-4


def test_batches_are_shuffled_epochs(data_dir):
    _, t, _ = setup(data_dir, batch_size=100)
    key = jax.random.key_data(jax.random.key(3))
    per_epoch = len(t.host) // 100
    epoch = np.concatenate([np.asarray(t.rows(key, jnp.int32(i))) for i in range(per_epoch)])
    assert len(np.unique(epoch)) == per_epoch * 100  # no example twice within an epoch
    assert not np.array_equal(np.asarray(t.rows(key, jnp.int32(0))), np.asarray(t.rows(key, jnp.int32(per_epoch))))


@pytest.mark.parametrize("kind,tau,max_tau", [("uniform", 4, 4), ("geometric", 3, 8)])
def test_staleness_laws(kind, tau, max_tau):
    n = 40000
    keys = jax.random.split(jax.random.key(0), n)
    draws = np.asarray(jax.vmap(lambda k: async_sgd.draw_staleness(k, kind, tau, max_tau))(keys))
    support = np.arange(max_tau + 1)
    if kind == "uniform":
        pmf = np.full(tau + 1, 1 / (tau + 1))
    else:
        p = 1 / (1 + tau)
        pmf = p * (1 - p) ** support
        pmf[-1] = (1 - p) ** max_tau  # the truncated tail sits on max_tau
    freq = np.bincount(draws, minlength=len(pmf)) / n
    assert freq.shape == pmf.shape and draws.min() >= 0
    np.testing.assert_allclose(freq, pmf, atol=5 * np.sqrt(0.25 / n))


@pytest.mark.parametrize(
    "options,message",
    [
        ({"tau": -1}, r"config.task.tau=-1 must be an integer >= 0"),
        ({"staleness": "poisson"}, r"config.task.staleness='poisson' is not one of"),
        ({"lr_scaling": "sqrt"}, r"config.task.lr_scaling='sqrt' is not one of"),
        ({"dataset": ""}, "config.task.dataset is required"),
        ({"max_tau": 5}, "only the geometric staleness takes it"),
        ({"staleness": "geometric", "tau": 4, "max_tau": 2}, "max_tau=2 must be >= tau=4"),
    ],
)
def test_bad_configs(data_dir, options, message):
    with pytest.raises(ValueError, match=message):
        tasks.make({"name": "async_sgd", "dataset": "digits", "data_dir": data_dir, **options})
