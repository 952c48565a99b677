"""The trainer's compiled train step on synthetic batches, timed: what the throughput benchmarks share
(experiments/parallel/bench.py, experiments/gpt_mfu/run.py).

`compile_step(config, ds_info, devices)` builds the state and jits the step through `jaxdl.state` exactly as
`train_and_evaluate` does (shardings, donation, activation rules); `time_steps` runs
it on fresh random batches (never zeros) with a device sync around each step and returns the per-step seconds
after the warm-up steps.
"""

import time
from collections.abc import Callable

import jax
import numpy as np
from ml_collections import ConfigDict

from jaxdl import config as config_lib
from jaxdl import state as state_lib
from jaxdl.parallel import rules as rules_lib
from jaxdl.parallel.mesh import make_mesh


def compile_step(config: ConfigDict, ds_info: dict, devices=None):
    """(step, state, batch_sharding): the jitted train step of `config` for a dataset shaped like `ds_info`."""
    config = config_lib.validate(config)
    mesh = make_mesh(config.mesh, devices, config.mesh_dcn)
    rules = rules_lib.resolve(config.sharding.strategy, config.sharding.rules)
    task = state_lib.task_of(config)
    tx, schedule = state_lib.make_optimizers(config, task)
    graphdef, state, state_sharding = state_lib.init_sharded_state(config, ds_info, tx, mesh, rules, task)
    step = state_lib.compile_train_step(config, graphdef, tx, schedule, mesh, rules, state_sharding, task)
    return step, state, rules_lib.batch_sharding(mesh, rules)


def time_steps(
    step, state, batch_sharding, make_batch: Callable[[np.random.Generator], dict], *, steps: int, warmup: int = 2
) -> tuple[list[float], dict]:
    """Per-step wall seconds of `steps` timed steps after `warmup` (inputs transferred before the clock starts);
    also returns the last step's metrics."""
    rng = np.random.default_rng(0)
    times, metrics = [], {}
    for i in range(warmup + steps):
        batch = jax.device_put(make_batch(rng), batch_sharding)
        jax.block_until_ready(batch)
        t0 = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready((state, metrics))
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times, jax.device_get(metrics)
