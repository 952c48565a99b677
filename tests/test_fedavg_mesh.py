"""FedAvg clients split over the mesh's data axis (jaxdl.federated.fedavg with `client_axes`, task fedavg).

Reference: the same round (same sampled clients, same local keys) through the trainer's compiled step on a 1-device
mesh; on the 8 simulated CPU devices the clients are trained 1 per device inside a `shard_map` over `data` and
averaged by a `psum`, which must give the same global parameters within 1e-5."""

import jax
import ml_collections
import numpy as np
import pytest

from jaxdl import config as config_lib
from jaxdl import data, tasks
from jaxdl.parallel import rules as rules_lib
from jaxdl.parallel.mesh import make_mesh
from jaxdl.state import compile_train_step, init_sharded_state, make_optimizers


def config(data_dir, **task):
    c = config_lib.base()
    c.data.name, c.data.data_dir = "digits", data_dir
    c.model = ml_collections.ConfigDict({"name": "mlp", "hidden": (16,)})
    options = dict(clients=16, partition="shards", clients_per_round=8, local_epochs=2, local_batch_size=20)
    c.task = ml_collections.ConfigDict(
        dict(name="fedavg", dataset="digits", data_dir=data_dir, local_lr=0.1, **(options | task))
    )
    c.optim.name, c.optim.lr, c.optim.schedule, c.optim.warmup_steps, c.optim.weight_decay = (
        "sgd", 1.0, "constant", 0, 0.0,
    )  # fmt: skip
    c.train.steps = 2
    return c


def rounds(c, devices, n: int = 2):
    """Global params after `n` rounds on a data-parallel mesh over `devices`, and the lowered step's text."""
    task = tasks.make(c.task)
    mesh = make_mesh(c.mesh, devices, c.mesh_dcn)
    rules = rules_lib.resolve(c.sharding.strategy, c.sharding.rules)
    tx, schedule = make_optimizers(c, task)
    info = data.info(c.data.name, c.data.data_dir)
    graphdef, state, sharding = init_sharded_state(c, info, tx, mesh, rules, task)
    step = compile_train_step(c, graphdef, tx, schedule, mesh, rules, sharding, task)
    text = step.lower(state, {}).as_text()
    for _ in range(n):
        state, metrics = step(state, {})
    return jax.device_get(state["params"]), float(metrics["loss"]), text


def test_round_on_8_devices_equals_1_device(data_dir):
    assert len(jax.devices()) == 8, "tests/conftest.py provides 8 simulated CPU devices"
    c = config(data_dir)
    one, loss1, text1 = rounds(c, jax.devices()[:1])
    eight, loss8, text8 = rounds(c, jax.devices())
    # the clients really were split: a manual (shard_map) region with an all-reduce on 8 devices, none on 1
    assert "manual_computation" in text8 and "all_reduce" in text8, text8[:2000]
    assert "manual_computation" not in text1
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(eight), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-5)
    assert loss1 == pytest.approx(loss8, abs=1e-5)
    moved = max(
        float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(init(c)), strict=True)
    )
    assert moved > 1e-3  # two rounds changed the model (the equality is not of untouched parameters)


def init(c):
    task = tasks.make(c.task)
    mesh = make_mesh(c.mesh, jax.devices()[:1], c.mesh_dcn)
    rules = rules_lib.resolve(c.sharding.strategy, c.sharding.rules)
    tx, _ = make_optimizers(c, task)
    _, state, _ = init_sharded_state(c, data.info(c.data.name, c.data.data_dir), tx, mesh, rules, task)
    return jax.device_get(state["params"])


def test_clients_not_divisible_by_the_data_axis_fail(data_dir):
    c = config(data_dir, clients_per_round=6)
    with pytest.raises(ValueError, match=r"clients_per_round=6 is not divisible by the 8 devices of mesh axes"):
        rounds(c, jax.devices(), n=0)
