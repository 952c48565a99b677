"""The trainer: one function in banner sections, mesh → data → model/optimizer → shard → step → checkpoint →
evals → loop, for any task (`jaxdl.tasks`: the loss, batch keys, parameter groups and default evaluators).

The model is split functionally at the jit boundary (`nnx.split` → params / other state, `nnx.merge` inside the
step, `jaxdl.state`); the step is a pure function of (state, batch) jitted with explicit in/out shardings and
donated state. Everything that makes a run resumable lives in `state` (params, model state, optimizer state, step,
rng key, and the EMA / task carry when used); the data stream is a pure function of (seed, step), so a restored
step restores the data position too. Evaluators (`jaxdl.evaluators`, `config.evals`) run at their own cadence.
"""

import logging
import time

import jax
from ml_collections import ConfigDict

from jaxdl import config as config_lib
from jaxdl import data, evaluators, tasks
from jaxdl.checkpoint import Checkpointer
from jaxdl.finetune import HF_PREFIX, check_hf_architecture, init_from
from jaxdl.metrics import MetricWriter, Progress, mean_over_steps, write_run_files
from jaxdl.parallel import rules as rules_lib
from jaxdl.parallel.mesh import make_mesh
from jaxdl.state import (
    check_finite,
    compile_train_step,
    guard_names,
    init_sharded_state,
    make_optimizers,
    sharding_context,
)

log = logging.getLogger(__name__)


def dataset_info(config: ConfigDict, task: tasks.Task) -> dict:
    """The dataset's info (input_shape, num_classes, label_key, ...), or the task's for a run without a dataset."""
    if config.data.name:
        return data.info(config.data.name, config.data.data_dir or None)
    return task.data_info(config)


def eval_context(config, task, graphdef, ds_info, mesh, rules, state_sharding, workdir="") -> evaluators.Context:
    return evaluators.Context(
        config=config,
        task=task,
        graphdef=graphdef,
        ds_info=ds_info,
        mesh=mesh,
        batch_sharding=rules_lib.batch_sharding(mesh, rules),
        param_sharding=state_sharding["params"],
        rest_sharding=state_sharding["rest"],
        trace_context=lambda: sharding_context(config, mesh, rules),
        workdir=workdir,
    )


def check_batch_keys(batch: dict, task: tasks.Task, config: ConfigDict) -> None:
    missing = [k for k in task.batch_keys if k not in batch]
    if missing:
        raise ValueError(
            f"config.task.name={config.task.name!r} needs batch keys {list(task.batch_keys)}; dataset "
            f"{config.data.name!r} gives {sorted(batch)} (missing {missing})"
        )
    task.check_batch(batch)  # the task's own check (e.g. pixel range), before compiling


def train_and_evaluate(config: ConfigDict, workdir: str, *, devices=None) -> dict[str, float]:
    """Trains `config` in `workdir` (resuming from its latest checkpoint) and returns the final eval metrics.

    `devices` (default: all) is what the mesh is built on; tests use it to compare 1-device and N-device runs."""
    config = config_lib.validate(config)
    if config.train.init_from.startswith(HF_PREFIX):  # before any expensive work: the architectures must agree
        check_hf_architecture(config.train.init_from, config.model)
    task = tasks.make(config.task)
    is_main = jax.process_index() == 0
    total = config.train.steps

    # ----------------------------------------------------------------------------------------------- mesh
    mesh = make_mesh(config.mesh, devices, config.mesh_dcn)
    rules = rules_lib.resolve(config.sharding.strategy, config.sharding.rules)
    batch_sharding = rules_lib.batch_sharding(mesh, rules)
    log.info("mesh %s on %d devices, strategy %s", dict(mesh.shape), mesh.size, config.sharding.strategy)

    # ----------------------------------------------------------------------------------------------- data
    ds_info = dataset_info(config, task)
    loader = None
    if not task.produces_batches:
        train_source = data.load(config.data.name, config.data.train_split, config.data.data_dir or None)
        augment = data.augment.make_augment(config.data.augment.to_dict())
        data.augment.check_config(config.data.augment.to_dict(), tuple(ds_info["input_shape"]))
        if config.data.train_fraction < 1:
            train_source = data.subset.label_fraction(
                train_source, ds_info["label_key"], config.data.train_fraction, config.seed
            )
            log.info("train_fraction %g: %d examples", config.data.train_fraction, len(train_source))
        train_source = data.memory.cache(
            train_source,
            mode=config.data.cache,
            budget_mb=config.data.memory_budget_mb,
            what=f"dataset {config.data.name!r} split {config.data.train_split!r}",
        )
        loader = data.TrainLoader(
            train_source,
            dataset=config.data.name,
            global_batch_size=config.data.batch_size,
            seed=config.seed,
            sharding=batch_sharding,
            prefetch=config.data.prefetch,
            augment=augment,
            order=config.data.order,
            workers=config.data.workers,
            buckets=tuple(config.data.get("buckets", ())),
        )

    # ------------------------------------------------------------------------------------ model / optimizer
    tx, schedule = make_optimizers(config, task)

    # ----------------------------------------------------------------------------------------------- shard
    graphdef, state, state_sharding = init_sharded_state(config, ds_info, tx, mesh, rules, task)
    n_params = sum(x.size for x in jax.tree.leaves(state["params"]))
    log.info("model %s (task %s): %d parameters", config.model.get("name", ""), config.task.name, n_params)

    # ----------------------------------------------------------------------------------------------- step
    train_step = compile_train_step(config, graphdef, tx, schedule, mesh, rules, state_sharding, task)
    names = guard_names(state["params"], task)

    # ----------------------------------------------------------------------------------------- checkpoint
    ckpt = Checkpointer(
        f"{workdir}/checkpoints",
        max_to_keep=config.train.keep_checkpoints,
        async_save=config.train.async_checkpoints,
    )
    start = ckpt.latest_step()
    if start is not None:
        target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, state_sharding)
        state, _ = ckpt.restore(target, start)
        log.info("resumed from step %d", start)
    elif config.train.init_from:
        state = init_from(state, config.train.init_from, mesh, rules, config.train.init_exclude)
    start = start or 0
    writer = MetricWriter(workdir, enabled=is_main, resume_step=start if start else None)
    if is_main:
        write_run_files(workdir, config.to_dict())

    # ----------------------------------------------------------------------------------------------- evals
    ctx = eval_context(config, task, graphdef, ds_info, mesh, rules, state_sharding, workdir)
    evals = evaluators.make_all(evaluators.specs(config, task), ctx)

    def run_evals(step: int, last: bool) -> dict[str, float]:
        results = {}
        for name, ev in evals.items():
            if ev.due(step, last):
                results |= {evaluators.metric_key(name, k): v for k, v in ev.evaluate(state).items()}
        if results:
            writer.write(step, results)
            log.info("step %d: %s", step, results)
        return results

    # ----------------------------------------------------------------------------------------------- loop
    progress = Progress(total, start, enabled=is_main and config.train.progress)
    pending, flags, results = [], [], {}
    step, t0, t_log = start, time.perf_counter(), start
    waited, step_ms, time_next = 0.0, None, False  # goodput: input wait per window, one synchronized step
    stream = loader.iterate(start) if loader is not None else None
    try:
        while step < total:
            if stream is not None:
                t_wait = time.perf_counter()
                batch = next(stream)
                waited += time.perf_counter() - t_wait
                if step == start:
                    check_batch_keys(batch, task, config)
            else:
                batch = {}
            t_step = time.perf_counter()
            state, metrics = train_step(state, batch)
            if time_next:  # the device is idle after a log (its metrics were fetched): time this step alone
                jax.block_until_ready(metrics)
                step_ms, time_next = 1e3 * (time.perf_counter() - t_step), False
            step += 1
            if config.train.nan_guard:
                flags.append((step, metrics.pop("first_nonfinite")))
            pending.append(metrics)
            last = step == total
            if step % config.train.log_every == 0 or last:
                check_finite(flags, names)
                flags = []
                scalars = {f"train/{k}": v for k, v in mean_over_steps(pending).items()}
                window = time.perf_counter() - t0
                scalars["train/steps_per_sec"] = (step - t_log) / window
                scalars["train/input_wait_fraction"] = waited / window
                if step_ms is not None:
                    scalars["train/step_ms"] = step_ms
                writer.write(step, scalars)
                progress.update(step - t_log, {"loss": scalars.get("train/loss", next(iter(scalars.values())))})
                pending, t0, t_log, waited, time_next = [], time.perf_counter(), step, 0.0, True
            results |= run_evals(step, last)
            if (config.train.checkpoint_every and step % config.train.checkpoint_every == 0) or last:
                check_finite(flags, names)
                flags = []
                ckpt.save(step, state, {"step": step, "dataset": config.data.name}, force=last)
        if not results:  # resumed at the end: evaluate what was restored
            results = run_evals(step, True)
    finally:
        progress.close()
        if loader is not None:
            loader.close()
        ckpt.close()
        writer.close()
    return results
