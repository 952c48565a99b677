"""The sharded train state and the jitted train step, for any task (shared by train, steptime, finetune, evaluate).

state = {params, rest, opt_state, step, rng} (+ `ema` when `config.train.ema_decay > 0`, + `carry` for a task that
produces its own batches). `params` are the model's `nnx.Param`s, `rest` its other variables (batch statistics,
counters a task updates), `opt_state` one optax state (or {group: state} for a task with parameter groups), `rng`
raw key data. Everything that makes a run resumable is here; the step is a pure function of (state, batch).

The step, for each phase of the task (`jaxdl.tasks.Phase`): merge the model from (params, rest) at this trace
level, differentiate the phase's loss (+ the model's `AuxLoss`es) w.r.t. the phase's parameter groups, averaging
`config.train.grad_accum` microbatches in a `lax.scan` (microbatch i = rows i::accum, so each stays spread over
all devices), and apply those groups' optimizers. The NaN guard then keeps the old state if any input, loss or
gradient is non-finite and reports the first bad tensor; the EMA of the parameters follows the kept update.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from ml_collections import ConfigDict

from jaxdl import optim, tasks
from jaxdl.layers.aux_loss import aux_loss
from jaxdl.layers.quantized import apply_quant
from jaxdl.parallel import rules as rules_lib

BATCH_KEY_SALT = 0x62617463  # folds the step key into the key of `make_batch` (independent of the loss's)


class NonFiniteError(FloatingPointError):
    """Raised by the NaN/inf guard; names the step and the first non-finite tensor."""


def task_of(config: ConfigDict) -> tasks.Task:
    return tasks.make(config.task)


def make_optimizers(config: ConfigDict, task: tasks.Task):
    """(tx, schedule) from `config.optim`; for a task with parameter groups, ({group: tx}, {group: schedule}) with
    `config.optim` updated by `config.optim_groups.<group>`."""
    total = config.train.steps
    if task.groups is None:
        return optim.make_optimizer(config.optim, total)
    txs, schedules = {}, {}
    for group in task.groups:
        cfg = ConfigDict(config.optim.to_dict())
        cfg.update(dict(config.optim_groups.get(group, {})))
        txs[group], schedules[group] = optim.make_optimizer(cfg, total)
    return txs, schedules


def guard_names(params, task: tasks.Task | None = None) -> list[str]:
    """Names of the tensors the NaN guard checks, in the order of its flags."""
    task = task or tasks.get_class("classify")()
    names = ["batch/input" if "input" in task.batch_keys and not task.produces_batches else "batch"]
    for phase in task.phases():
        sub = params if phase.groups is None else {g: params[g] for g in phase.groups}
        prefix = f"{phase.name}/" if phase.name else ""
        paths = [
            jax.tree_util.keystr(p, simple=True, separator="/") for p, _ in jax.tree_util.tree_leaves_with_path(sub)
        ]
        names += [f"{prefix}loss"] + [f"grad of {p}" for p in paths]
    return names


def sharding_context(config: ConfigDict, mesh, rules):
    """The activation-rules context the steps are traced in (`rules.constrain` and layer options work inside)."""
    s = config.sharding
    return rules_lib.activation_rules(
        mesh,
        rules,
        pipeline_microbatches=s.pipeline_microbatches,
        pipeline_schedule=s.pipeline_schedule,
        pipeline_repeats=s.pipeline_repeats,
    )


def traced_in(context, fn):
    """`fn` whose body runs inside `context()` (entered while jit traces it)."""

    def wrapped(*args):
        with context():
            return fn(*args)

    return wrapped


def _replace(params, sub: dict):
    """`params` (an nnx.State) with the top-level groups of `sub` replaced."""
    new = jax.tree.map(lambda x: x, params)
    for group, value in sub.items():
        new[group] = value
    return new


def _phase_grad_fn(graphdef, phase: tasks.Phase):
    """value_and_grad of the phase loss w.r.t. `sub` (all params, or {group: params} of the phase's groups)."""

    def loss_fn(sub, params, rest, batch, key):
        full = sub if phase.groups is None else _replace(params, sub)
        model = nnx.merge(graphdef, full, rest, copy=True)  # fresh Variables at this trace level
        rngs = nnx.Rngs(dropout=key, sampling=jax.random.fold_in(key, 1))
        loss, metrics = phase.loss(model, batch, rngs)
        loss = loss + aux_loss(model)  # e.g. MoE load balancing; 0 for most models
        return loss, (nnx.state(model, nnx.Not(nnx.Param)), metrics)

    return jax.value_and_grad(loss_fn, has_aux=True)


def _accumulate(grad_fn, accum: int, sub, params, rest, batch, key):
    """(loss, rest, metrics, grads): one call, or the mean over `accum` microbatches (grads summed in float32)."""
    if accum == 1:
        (loss, (rest, metrics)), grads = grad_fn(sub, params, rest, batch, key)
        return loss, rest, metrics, grads
    micro = jax.tree.map(lambda x: x.reshape(-1, accum, *x.shape[1:]).swapaxes(0, 1), batch)

    def body(carry, xs):
        rest, gsum, lsum, msum = carry
        i, mb = xs
        (loss, (rest, metrics)), g = grad_fn(sub, params, rest, mb, jax.random.fold_in(key, i))
        gsum = jax.tree.map(lambda a, b: a + b.astype(jnp.float32), gsum, g)
        return (rest, gsum, lsum + loss, jax.tree.map(jnp.add, msum, metrics)), None

    first = jax.tree.map(lambda x: x[0], micro)
    shapes = jax.eval_shape(grad_fn, sub, params, rest, first, key)[0][1][1]
    mzero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), sub)
    init = (rest, zeros, jnp.zeros(()), mzero)
    (rest, gsum, lsum, msum), _ = jax.lax.scan(body, init, (jnp.arange(accum), micro))
    grads = jax.tree.map(lambda g, p: (g / accum).astype(p.dtype), gsum, sub)
    return lsum / accum, rest, jax.tree.map(lambda m: m / accum, msum), grads


def make_train_step(graphdef, tx, schedule, config: ConfigDict, task: tasks.Task | None = None):
    """The pure train step: (state, batch) -> (state, metrics). `tx`/`schedule` come from `make_optimizers`
    (dicts by group for a task with groups); `batch` is ignored ({}) for a task that produces its own."""
    task = task or task_of(config)
    accum, guard, decay = config.train.grad_accum, config.train.nan_guard, config.train.get("ema_decay", 0.0)
    phases = task.phases()
    grad_fns = [_phase_grad_fn(graphdef, p) for p in phases]

    def step_fn(state, batch):
        params, rest, opt_state = state["params"], state["rest"], state["opt_state"]
        key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
        new_state = dict(state)
        if task.produces_batches:
            model = nnx.merge(graphdef, params, rest, copy=True)
            batch, new_state["carry"] = task.make_batch(model, state["carry"], jax.random.fold_in(key, BATCH_KEY_SALT))
            rest = nnx.state(model, nnx.Not(nnx.Param))
        flags = [jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in _float_leaves(batch, task)]))]
        metrics, opt_state = {}, dict(opt_state) if task.groups is not None else opt_state
        for phase, grad_fn in zip(phases, grad_fns, strict=True):
            sub = params if phase.groups is None else {g: params[g] for g in phase.groups}
            loss, rest, phase_metrics, grads = _accumulate(grad_fn, accum, sub, params, rest, batch, key)
            if phase.groups is None:
                updates, opt_state = tx.update(grads, opt_state, params)
                params = optax.apply_updates(params, updates)
                lrs = {"lr": schedule(state["step"])}
            else:
                new_sub = {}
                for g in phase.groups:
                    updates, opt_state[g] = tx[g].update(grads[g], opt_state[g], params[g])
                    new_sub[g] = optax.apply_updates(params[g], updates)
                params = _replace(params, new_sub)
                lrs = {f"lr/{g}" if len(phase.groups) > 1 else "lr": schedule[g](state["step"]) for g in phase.groups}
            prefix = f"{phase.name}/" if phase.name else ""
            metrics |= {f"{prefix}{k}": v for k, v in {"loss": loss, **phase_metrics}.items()}
            metrics |= {f"{prefix}grad_norm": optax.global_norm(grads)} | {f"{prefix}{k}": v for k, v in lrs.items()}
            flags += [jnp.isfinite(loss)] + [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]
        new_state.update(params=params, rest=rest, opt_state=opt_state, step=state["step"] + 1)
        if decay:
            new_state["ema"] = jax.tree.map(
                lambda e, p: decay * e + (1.0 - decay) * p.astype(e.dtype), state["ema"], params
            )
        if guard:  # skip a non-finite update and report which tensor went bad first
            flags = jnp.stack(flags)
            ok = jnp.all(flags)
            for k in ("params", "rest", "opt_state", "ema", "carry"):
                if k in state:
                    new_state[k] = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new_state[k], state[k])
            metrics["first_nonfinite"] = jnp.where(ok, -1, jnp.argmin(flags))
        return new_state, metrics

    return step_fn


def _float_leaves(batch: dict, task: tasks.Task) -> list[jax.Array]:
    """What the guard checks of the batch: its `input` (loader batches), or every float leaf (produced batches)."""
    if "input" in batch and not task.produces_batches:
        return [batch["input"]]
    leaves = [x for x in jax.tree.leaves(batch) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    return leaves or [jnp.zeros(())]


def check_finite(pending_flags: list[tuple[int, jax.Array]], names: list[str]) -> None:
    """Raises NonFiniteError for the first step whose guard flagged a non-finite tensor."""
    if not pending_flags:
        return
    values = jax.device_get([f for _, f in pending_flags])
    for (step, _), first in zip(pending_flags, values, strict=True):
        if first >= 0:
            raise NonFiniteError(
                f"non-finite value at step {step}: first non-finite tensor is {names[int(first)]!r} "
                "(that update was skipped; the last checkpoint holds finite state)"
            )


def builder(config: ConfigDict, ds_info: dict, task: tasks.Task | None = None):
    """rngs -> the (quantized, when `config.quant` says so) module the task trains, for a dataset like `ds_info`."""
    from jaxdl import data

    task = task or task_of(config)
    data_dir = config.data.data_dir or None
    # train-split label counts, computed only if the model asks (e.g. a unigram proposal or a Huffman tree)
    counts = lambda: data.label_counts(config.data.name, config.data.train_split, data_dir)
    return lambda rngs: apply_quant(  # config.quant: QuantDense layers (same parameter tree); 'none': unchanged
        task.build(
            config.model,
            input_shape=tuple(ds_info["input_shape"]),
            num_classes=ds_info["num_classes"],
            rngs=rngs,
            label_counts=counts,
        ),
        config.quant.to_dict(),
    )


def abstract_sharded_state(config: ConfigDict, ds_info: dict, tx, mesh, rules, task: tasks.Task | None = None):
    """(graphdef, abstract state, state shardings, init_state function) of `config`'s task, model and optimizer
    for `ds_info`; nothing is allocated."""
    task = task or task_of(config)
    root_key = jax.random.key(config.seed)
    build = builder(config, ds_info, task)

    def init_state():
        model = build(nnx.Rngs(params=jax.random.fold_in(root_key, 0)))
        _, params, rest = nnx.split(model, nnx.Param, ...)
        rng = jax.random.key_data(jax.random.fold_in(root_key, 1))
        if task.groups is None:
            opt_state = tx.init(params)
        else:
            opt_state = {g: tx[g].init(params[g]) for g in task.groups}
        state = dict(params=params, rest=rest, opt_state=opt_state, step=jnp.zeros((), jnp.int32), rng=rng)
        if config.train.get("ema_decay", 0.0):
            state["ema"] = jax.tree.map(jnp.copy, params)
        if task.produces_batches:
            state["carry"] = task.init_carry(jax.random.fold_in(root_key, 2), model)
        return state

    with nnx.use_eager_sharding(False):
        graphdef = nnx.graphdef(nnx.eval_shape(lambda: build(nnx.Rngs(0))))
        abstract_state = jax.eval_shape(init_state)
    state_sharding = rules_lib.tree_shardings(abstract_state, mesh, rules)
    rules_lib.check_divisible(abstract_state["params"], state_sharding["params"], "params")
    rules_lib.check_divisible(abstract_state, state_sharding, "state")
    return graphdef, abstract_state, state_sharding, init_state


def init_sharded_state(config: ConfigDict, ds_info: dict, tx, mesh, rules, task: tasks.Task | None = None):
    """(graphdef, state, state_sharding): the model built for `ds_info` and initialized directly into its
    shardings (no full copy on any device)."""
    graphdef, _, state_sharding, init_state = abstract_sharded_state(config, ds_info, tx, mesh, rules, task)
    with nnx.use_eager_sharding(False):
        state = jax.jit(init_state, out_shardings=state_sharding)()
    return graphdef, state, state_sharding


def compile_train_step(config: ConfigDict, graphdef, tx, schedule, mesh, rules, state_sharding, task=None):
    """The jitted step with the trainer's shardings, donation and activation rules."""
    from jax.sharding import NamedSharding, PartitionSpec

    return jax.jit(
        traced_in(lambda: sharding_context(config, mesh, rules), make_train_step(graphdef, tx, schedule, config, task)),
        in_shardings=(state_sharding, rules_lib.batch_sharding(mesh, rules)),
        out_shardings=(state_sharding, NamedSharding(mesh, PartitionSpec())),
        donate_argnums=(0,),
    )


class Restored(NamedTuple):
    config: ConfigDict
    task: tasks.Task
    graphdef: Any
    state: dict
    state_sharding: Any
    mesh: Any
    rules: tuple
    ds_info: dict
    step: int


def restore_run(workdir: str, step: int | None = None, devices=None) -> Restored:
    """The run in `workdir` restored from its checkpoint at `step` (default: the latest) onto a data-parallel mesh
    over `devices` (default: all; its own mesh layout need not fit here). The abstract state is the trainer's own
    (optimizer state included), which is what `Checkpointer.restore` checks the checkpoint against."""
    import os

    from jaxdl import config as config_lib
    from jaxdl import data
    from jaxdl.checkpoint import Checkpointer
    from jaxdl.parallel.mesh import make_mesh

    config = config_lib.load_run_config(workdir)
    with config.unlocked():  # any checkpoint restores onto any mesh: evaluate data-parallel here
        for a in config.mesh:
            config.mesh[a] = -1 if a == "data" else 1
        for a in config.mesh_dcn:
            config.mesh_dcn[a] = 1
    task = task_of(config)
    ds_info = data.info(config.data.name, config.data.data_dir or None) if config.data.name else task.data_info(config)
    mesh = make_mesh(config.mesh, devices, config.mesh_dcn)
    rules = rules_lib.resolve(config.sharding.strategy, config.sharding.rules)
    tx, _ = make_optimizers(config, task)
    graphdef, abstract, state_sharding, _ = abstract_sharded_state(config, ds_info, tx, mesh, rules, task)
    target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, state_sharding)
    with Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False) as ckpt:
        step = ckpt.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{workdir}/checkpoints holds no checkpoint")
        state, _ = ckpt.restore(target, step)
    return Restored(config, task, graphdef, state, state_sharding, mesh, rules, ds_info, int(step))
