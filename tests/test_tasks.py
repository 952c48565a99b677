"""Task mechanisms of the trainer, each against an independent hand computation: (a) parameter groups with their
own optimizers updated alternately in one step, (b) an EMA of the parameters (hand-folded; bitwise after resume;
evaluated on request), (c) a task that makes its batches inside the step from carried state (bitwise resume),
(d) non-gradient state a task updates (a counter and a running mean, kept or dropped with the NaN guard)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from jaxdl import config as config_lib
from jaxdl import state as state_lib
from jaxdl import tasks
from jaxdl.metrics import read_metrics
from jaxdl.parallel import rules as rules_lib
from jaxdl.parallel.mesh import make_mesh
from jaxdl.train import train_and_evaluate


# ------------------------------------------------------------------------------------------- toy tasks
class Pair(nnx.Module):
    """A 'generator' (3 -> 3) and a 'discriminator' (3 -> 1), both linear."""

    def __init__(self, rngs: nnx.Rngs):
        self.generator = nnx.Linear(3, 3, rngs=rngs)
        self.discriminator = nnx.Linear(3, 1, rngs=rngs)


def d_loss(m, batch, rngs):
    del rngs
    real, fake = m.discriminator(batch["input"]), m.discriminator(m.generator(batch["input"] * 0.5))
    return jnp.mean((real - 1.0) ** 2) + jnp.mean(fake**2), {}


def g_loss(m, batch, rngs):
    del rngs
    return jnp.mean((m.discriminator(m.generator(batch["input"] * 0.5)) - 1.0) ** 2), {}


class PairTask(tasks.Task):
    groups = ("generator", "discriminator")
    batch_keys = ("input",)

    def check_model_config(self, model_config):
        pass

    def build(self, model_config, *, rngs, **_):
        return Pair(rngs)

    def phases(self):
        return (tasks.Phase(d_loss, ("discriminator",), "d"), tasks.Phase(g_loss, ("generator",), "g"))

    def default_evals(self):
        return {}


class Counter(nnx.Variable):
    """Non-gradient state a task updates."""


class CountingModel(nnx.Module):
    def __init__(self, rngs):
        self.net = nnx.Linear(4, 1, rngs=rngs)
        self.seen = Counter(jnp.zeros((), jnp.float32))
        self.mean_x = Counter(jnp.zeros((), jnp.float32))


class DriftTask(tasks.Task):
    """Produces its batches inside the step: 8 'environments' whose observation drifts (obs <- 0.9 obs + noise)
    over a 3-step lax.scan rollout; regression of the observation sum. Counts the rows it trained on and keeps a
    running mean of the inputs (non-gradient state)."""

    produces_batches = True
    batch_keys = ("input", "label")

    def __init__(self, rollout: int = 3):
        self.rollout = rollout

    def check_model_config(self, model_config):
        pass

    def data_info(self, config):
        return {"input_shape": (4,), "num_classes": 1}

    def build(self, model_config, *, rngs, **_):
        return CountingModel(rngs)

    def init_carry(self, key, model):
        return {"obs": jax.random.normal(key, (8, 4)), "t": jnp.zeros((), jnp.int32)}

    def make_batch(self, model, carry, key):
        def step(obs, k):
            obs = 0.9 * obs + 0.3 * jax.random.normal(k, obs.shape)
            return obs, obs

        obs, xs = jax.lax.scan(step, carry["obs"], jax.random.split(key, self.rollout))
        x = xs.reshape(-1, 4)
        return {"input": x, "label": x.sum(-1, keepdims=True)}, {"obs": obs, "t": carry["t"] + 1}

    def loss(self, model, batch, rngs):
        model.seen.value = model.seen.value + batch["input"].shape[0]
        model.mean_x.value = 0.5 * model.mean_x.value + 0.5 * batch["input"].mean()
        return jnp.mean((model.net(batch["input"]) - batch["label"]) ** 2), {}

    def default_evals(self):
        return {}


for _name, _cls in (("test_pair", PairTask), ("test_drift", DriftTask)):
    if _name not in tasks.available():
        tasks.register(_name, _cls)


def base_config(task: str, **train):
    c = config_lib.base()
    c.task.name = task
    c.model = ml_collections.ConfigDict({"name": ""})
    c.optim.name, c.optim.lr = "sgd", 0.1
    c.train.steps, c.train.log_every, c.train.progress = 8, 4, False
    c.train.eval_every, c.train.checkpoint_every = 0, 4
    for k, v in train.items():
        c.train[k] = v
    return c


def unit_step(config, ds_info):
    """(jitted step, initial state) on one device, as the trainer builds them."""
    config = config_lib.validate(config)
    task = tasks.make(config.task)
    mesh = make_mesh(config.mesh, jax.devices()[:1], config.mesh_dcn)
    rules = rules_lib.resolve(config.sharding.strategy, config.sharding.rules)
    tx, schedule = state_lib.make_optimizers(config, task)
    graphdef, state, sharding = state_lib.init_sharded_state(config, ds_info, tx, mesh, rules, task)
    step = state_lib.compile_train_step(config, graphdef, tx, schedule, mesh, rules, sharding, task)
    return step, state, graphdef


# ------------------------------------------------------------------------------ (a) groups and phases
def test_two_groups_alternate_each_with_its_own_optimizer():
    c = base_config("test_pair")
    c.data.name = "mnist1d"  # only validated here
    c.optim_groups = ml_collections.ConfigDict({"discriminator": {"lr": 0.05}})  # generator: config.optim (0.1)
    step, state, _ = unit_step(c, {"input_shape": (3,), "num_classes": 1})
    params0 = jax.tree.map(np.asarray, nnx.to_pure_dict(state["params"]))
    batch = {"input": jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), jnp.float32)}
    new, metrics = step(jax.tree.map(jnp.copy, state), batch)

    # by hand: SGD on D with lr 0.05 from (G0, D0), then SGD on G with lr 0.1 against the *updated* D
    def linear(p, x):
        return x @ p["kernel"] + p["bias"]

    def hand_d_loss(g, d):
        real, fake = linear(d, batch["input"]), linear(d, linear(g, batch["input"] * 0.5))
        return jnp.mean((real - 1.0) ** 2) + jnp.mean(fake**2)

    def hand_g_loss(g, d):
        return jnp.mean((linear(d, linear(g, batch["input"] * 0.5)) - 1.0) ** 2)

    g0, d0 = params0["generator"], params0["discriminator"]
    d1 = jax.tree.map(lambda p, g: p - 0.05 * g, d0, jax.grad(hand_d_loss, argnums=1)(g0, d0))
    g1 = jax.tree.map(lambda p, g: p - 0.1 * g, g0, jax.grad(hand_g_loss)(g0, d1))
    got = nnx.to_pure_dict(new["params"])
    for name, want in (("discriminator", d1), ("generator", g1)):
        for k in ("kernel", "bias"):
            np.testing.assert_allclose(got[name][k], want[k], rtol=1e-6, atol=1e-7)
            assert not np.allclose(got[name][k], params0[name][k])
    assert set(metrics) >= {"d/loss", "g/loss", "d/grad_norm", "g/grad_norm", "d/lr", "g/lr"}
    assert float(metrics["d/lr"]) == pytest.approx(0.05) and float(metrics["g/lr"]) == pytest.approx(0.1)
    assert set(new["opt_state"]) == {"generator", "discriminator"}


def test_optim_groups_are_validated():
    c = base_config("test_pair")
    c.data.name = "mnist1d"
    c.optim_groups = ml_collections.ConfigDict({"critic": {"lr": 0.1}})
    with pytest.raises(ValueError, match=r"config.optim_groups.critic: task 'test_pair' has parameter groups"):
        config_lib.validate(c)
    c = base_config("test_pair")
    c.data.name = "mnist1d"
    c.optim_groups = ml_collections.ConfigDict({"generator": {"learning_rate": 0.1}})
    with pytest.raises(ValueError, match=r"config.optim_groups.generator.learning_rate is not a config.optim key"):
        config_lib.validate(c)


# ------------------------------------------------------------------------------------------- (b) EMA
def test_ema_equals_a_hand_fold_of_the_parameters():
    c = base_config("test_pair", ema_decay=0.75)
    c.data.name = "mnist1d"
    step, state, _ = unit_step(c, {"input_shape": (3,), "num_classes": 1})
    batch = {"input": jnp.asarray(np.random.default_rng(1).normal(size=(6, 3)), jnp.float32)}
    ema = jax.tree.map(np.asarray, nnx.to_pure_dict(state["params"]))
    for _ in range(5):
        state, _ = step(state, batch)
        params = jax.tree.map(np.asarray, nnx.to_pure_dict(state["params"]))
        ema = jax.tree.map(lambda e, p: np.float32(0.75) * e + np.float32(0.25) * p, ema, params)
    got = nnx.to_pure_dict(state["ema"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), got, ema)
    assert not np.allclose(got["generator"]["kernel"], params["generator"]["kernel"])


def mlp_config(data_dir, steps, **train):
    c = config_lib.base()
    c.data.name, c.data.data_dir = "mnist1d", data_dir
    c.data.batch_size, c.data.eval_batch_size = 32, 200
    c.model = ml_collections.ConfigDict({"name": "mlp"})
    c.optim.name, c.optim.lr = "adam", 3e-3
    c.train.steps, c.train.log_every, c.train.eval_every, c.train.checkpoint_every = steps, 5, 5, 5
    c.train.progress, c.train.ema_decay = False, 0.9
    c.evals = ml_collections.ConfigDict({"main": {"kind": "classify"}, "ema": {"kind": "classify", "use_ema": True}})
    for k, v in train.items():
        c.train[k] = v
    return c


def restored(workdir, step=None):
    return jax.tree.map(np.asarray, state_lib.restore_run(str(workdir), step, jax.devices()[:1]).state)


def test_ema_is_checkpointed_resumed_bitwise_and_evaluated(data_dir, tmp_path):
    full = train_and_evaluate(mlp_config(data_dir, 10), str(tmp_path / "full"))
    train_and_evaluate(mlp_config(data_dir, 5), str(tmp_path / "split"))  # constant lr: same run up to step 5
    resumed = train_and_evaluate(mlp_config(data_dir, 10), str(tmp_path / "split"))
    assert full == resumed
    a, b = restored(tmp_path / "full"), restored(tmp_path / "split")
    jax.tree.map(np.testing.assert_array_equal, a["ema"], b["ema"])
    assert not np.array_equal(jax.tree.leaves(a["ema"])[0], jax.tree.leaves(a["params"])[0])
    # the use_ema evaluator evaluates the average, the main one the parameters
    assert set(full) == {"eval/accuracy", "eval/loss", "eval/ema/accuracy", "eval/ema/loss"}
    assert full["eval/ema/loss"] != full["eval/loss"]


# ------------------------------------------------------------------------- (c) + (d) batches made in the step
def test_in_step_batches_resume_bitwise_and_counters_follow_the_guard(tmp_path):
    full_dir, split_dir = tmp_path / "full", tmp_path / "split"
    train_and_evaluate(base_config("test_drift"), str(full_dir))
    train_and_evaluate(base_config("test_drift", steps=4), str(split_dir))
    train_and_evaluate(base_config("test_drift"), str(split_dir))
    a, b = restored(full_dir), restored(split_dir)
    jax.tree.map(np.testing.assert_array_equal, a, b)  # params, opt state, rest, and the carried env state
    assert int(a["carry"]["t"]) == 8
    assert float(nnx.to_pure_dict(a["rest"])["seen"]) == 8 * 24  # rows trained on: 8 steps x 8 envs x 3
    losses = [r["train/loss"] for r in read_metrics(full_dir) if "train/loss" in r]
    # it learns the regression: the last logged MSE is well below the label variance, the MSE of the best constant
    # predictor, over 8 steps of the task's own batches (same process, the test's own keys)
    task, carry, labels = DriftTask(), DriftTask().init_carry(jax.random.key(1), None), []
    for k in jax.random.split(jax.random.key(2), 8):
        batch, carry = task.make_batch(None, carry, k)
        labels.append(np.asarray(batch["label"]))
    variance = float(np.var(np.concatenate(labels)))
    assert len(losses) == 2 and losses[1] < 0.5 * variance, (losses, variance)


def test_task_state_follows_accumulation_and_is_dropped_on_a_skipped_update():
    c = base_config("test_drift", grad_accum=2)
    step, state, _ = unit_step(c, {"input_shape": (4,), "num_classes": 1})
    state, metrics = step(state, {})
    rest = nnx.to_pure_dict(state["rest"])
    assert int(metrics["first_nonfinite"]) == -1 and float(rest["seen"]) == 24  # two microbatches of 12
    # a NaN weight makes the loss non-finite: the update, the counter and the running mean are all kept as they were
    bad = jax.tree.map(jnp.copy, state)
    bad["params"]["net"]["kernel"][...] = jnp.full((4, 1), jnp.nan)
    before = jax.tree.map(np.asarray, nnx.to_pure_dict(bad["rest"]))
    after, metrics = step(bad, {})
    assert int(metrics["first_nonfinite"]) >= 0
    jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(after["rest"]), before)
    assert int(after["carry"]["t"]) == int(state["carry"]["t"])
