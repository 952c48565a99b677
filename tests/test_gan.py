"""GAN: one jitted step equals D-then-G SGD by hand, each network moved only by its own optimizer (the D phase's
loss gives the generator no gradient), and a short run pulls the samples' statistics towards the data's."""

import baselines  # noqa: F401  (tests/ on sys.path)
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from run_helpers import short_run
from test_tasks import base_config, unit_step

from jaxdl import data, tasks
from jaxdl.state import restore_run


def _batch():
    x = np.random.default_rng(0).uniform(size=(8, 8, 8, 1)).astype(np.float32)
    return {"input": jnp.asarray(x)}


def test_step_updates_d_then_g_each_only_by_its_own_optimizer():
    """One jitted step against a hand computation: SGD on D alone (lr 0.05) from (G0, D0), then SGD on G alone
    (lr 0.1) against the *updated* D1, with the step's own random key. Nothing else moves either network."""
    c = base_config("gan")
    c.data.name = "digits_unit"  # only validated here
    c.model = ml_collections.ConfigDict(dict(name="dcgan", latent=4, width=4, g_norm="none"))
    c.optim.name, c.optim.lr = "sgd", 0.1
    c.optim_groups = ml_collections.ConfigDict({"discriminator": {"lr": 0.05}})  # generator: config.optim
    step, state, graphdef = unit_step(c, {"input_shape": (8, 8, 1), "num_classes": 1})
    task, batch = tasks.make(c.task), _batch()
    key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])  # the step's key
    params0, rest = jax.tree.map(jnp.copy, state["params"]), state["rest"]

    def loss(fn, p):
        model = nnx.merge(graphdef, p, rest, copy=True)
        return fn(model, batch, nnx.Rngs(dropout=key, sampling=jax.random.fold_in(key, 1)))[0]

    gd = jax.grad(lambda p: loss(task.d_loss, p))(params0)
    assert all(np.all(np.asarray(v) == 0) for v in jax.tree.leaves(gd["generator"]))  # G's output is detached
    p1 = jax.tree.map(lambda x: x, params0)
    p1["discriminator"] = jax.tree.map(lambda p, g: p - 0.05 * g, params0["discriminator"], gd["discriminator"])
    gg = jax.grad(lambda p: loss(task.g_loss, p))(p1)
    want_g = jax.tree.map(lambda p, g: p - 0.1 * g, params0["generator"], gg["generator"])

    new, metrics = step(jax.tree.map(jnp.copy, state), batch)
    for group, want in (("discriminator", p1["discriminator"]), ("generator", want_g)):
        got = jax.tree.leaves(nnx.to_pure_dict(new["params"][group]))
        ref = jax.tree.leaves(nnx.to_pure_dict(want))
        before = jax.tree.leaves(nnx.to_pure_dict(params0[group]))
        for g_, w_ in zip(got, ref, strict=True):
            np.testing.assert_allclose(g_, w_, rtol=1e-5, atol=1e-6)
        assert any(not np.array_equal(g_, b_) for g_, b_ in zip(got, before, strict=True))
    assert {"d/loss", "g/loss", "d/real_prob", "d/fake_prob", "d/lr", "g/lr"} <= set(metrics)
    assert float(metrics["d/lr"]) == pytest.approx(0.05) and float(metrics["g/lr"]) == pytest.approx(0.1)


def test_short_run_moves_samples_towards_the_data(tmp_path, data_dir):
    """Trivial baseline: the untrained generator. After a short run the mean image of 500 samples is much closer
    (squared error per pixel) to the data's mean image than at initialization."""
    short_run(
        tmp_path,
        data_dir,
        data="digits_unit",
        task="gan",
        model=dict(name="dcgan", latent=16, width=8),
        steps=150,
        log_every=50,
        batch=32,
        eval_batch=100,
        lr=2e-3,
    )
    x = data.preprocess("digits_unit", data.memory.read(data.load("digits_unit", "train", data_dir), range(1297)))
    real_mean = x["input"].mean(0)
    run = restore_run(str(tmp_path), devices=jax.devices()[:1])
    key = jax.random.key(0)

    def sample_mean(params):
        model = nnx.merge(run.graphdef, params, run.state["rest"])
        return np.asarray(run.task.sample(model, key, 500)).mean(0)

    with nnx.use_eager_sharding(False):
        from jaxdl import models

        init = nnx.state(
            models.make(
                dict(name="dcgan", latent=16, width=8), input_shape=(28, 28, 1), num_classes=10, rngs=nnx.Rngs(0)
            ),
            nnx.Param,
        )
    err_init = np.mean((sample_mean(init) - real_mean) ** 2)
    err_trained = np.mean((sample_mean(run.state["params"]) - real_mean) ** 2)
    assert err_trained < 0.25 * err_init, (err_trained, err_init)
