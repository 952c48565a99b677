"""The trainer: one function in banner sections, mesh → data → model/optimizer → shard → step → checkpoint →
evals → loop.

The model is split functionally at the jit boundary (`nnx.split` → params / other state, `nnx.merge` inside the
step); the step is a pure function of (state, batch) jitted with explicit in/out shardings and donated state.
Everything that makes a run resumable lives in `state` (params, model state, optimizer state, step, rng key);
the data stream is a pure function of (seed, step), so a restored step restores the data position too.

Loss protocol. By default the train step computes `logits = model(batch["input"], train=True, rngs=...,
**model_inputs(batch))` and the cross-entropy of `jaxdl.losses.batch_loss` (mean over the labels >= 0 of the rows
where the batch's "mask" is 1; mixup pairs; the accuracy of the argmax). A model may instead train through its
own per-label losses, for output layers that never build full logits (the sampled and hierarchical softmax heads
of gpt / rnn_lm): it sets the attribute `uses_label_losses = True` and defines

    label_losses(x, labels, *, train, rngs, **inputs) -> float32 [*labels.shape], 0 where labels < 0

(`rngs` = nnx.Rngs with streams `dropout` and `sampling`). The step then takes the same masked mean over the
same valid labels (`jaxdl.losses.label_loss_sums`), so ignored labels, "mask", gradient accumulation (the mean of
the microbatch means) and the NaN guard behave as on the default path; mixup batches raise. It logs no
`train/accuracy` for such a model: an exact argmax needs the full [batch, seq, vocab] scores the head exists to
avoid, and an argmax over sampled candidates would be a different number under the same name. Evaluation always
uses `model(x, train=False)`, whose logits such a model defines by its exact distribution, so eval loss, accuracy
and perplexity are comparable across heads.
"""

import logging
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec
from ml_collections import ConfigDict

from jaxdl import config as config_lib
from jaxdl import data, models, optim
from jaxdl.checkpoint import Checkpointer
from jaxdl.finetune import HF_PREFIX, check_hf_architecture, init_from
from jaxdl.layers.quantized import apply_quant
from jaxdl.losses import batch_loss, label_loss_sums, xent_sums
from jaxdl.metrics import MetricWriter, Progress, mean_over_steps, write_run_files
from jaxdl.models._common import aux_loss
from jaxdl.parallel import rules as rules_lib
from jaxdl.parallel.mesh import make_mesh

log = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
    """Raised by the NaN/inf guard; names the step and the first non-finite tensor."""


# Batch keys the loss or the pipeline own; any other key (e.g. a decoder's "target_in") is passed to the model.
NOT_MODEL_INPUTS = ("input", "label", "label_b", "mix", "mask")


def model_inputs(batch: dict) -> dict:
    """Extra keyword inputs of the model: `model(batch["input"], train=..., **model_inputs(batch))`."""
    return {k: v for k, v in batch.items() if k not in NOT_MODEL_INPUTS}


def uses_label_losses(model) -> bool:
    """Whether the train step calls `model.label_losses` instead of logits + cross-entropy (module docstring)."""
    return bool(getattr(model, "uses_label_losses", False))


def label_loss(model, batch: dict, key: jax.Array) -> jax.Array:
    """Mean training loss of a `uses_label_losses` model over the batch's valid labels (as `batch_loss`)."""
    if "label_b" in batch:
        raise ValueError(
            "mixup/CutMix batches (config.data.augment) need logits; this model trains through label_losses "
            "(e.g. config.model.head='sampled' or 'hierarchical')"
        )
    rngs = nnx.Rngs(dropout=key, sampling=jax.random.fold_in(key, 1))
    losses = model.label_losses(batch["input"], batch["label"], train=True, rngs=rngs, **model_inputs(batch))
    loss_sum, count = label_loss_sums(losses, batch["label"], batch.get("mask"))
    return loss_sum / jnp.maximum(count, 1.0)


def guard_names(params) -> list[str]:
    """Names of the tensors the NaN guard checks, in the order of its flags."""
    paths = [
        jax.tree_util.keystr(p, simple=True, separator="/") for p, _ in jax.tree_util.tree_leaves_with_path(params)
    ]
    return ["batch/input", "loss"] + [f"grad of {p}" for p in paths]


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


def make_train_step(graphdef, tx, schedule, config: ConfigDict):
    """The pure train step: (state, batch) -> (state, metrics), with gradient accumulation and the NaN guard."""
    accum, guard = config.train.grad_accum, config.train.nan_guard

    def loss_fn(params, rest, batch, key):
        model = nnx.merge(graphdef, params, rest, copy=True)  # fresh Variables at this trace level
        if uses_label_losses(model):
            loss, acc = label_loss(model, batch, key), jnp.zeros(())  # no training accuracy: see the module doc
        else:
            logits = model(batch["input"], train=True, rngs=nnx.Rngs(dropout=key), **model_inputs(batch))
            loss, acc = batch_loss(logits, batch)
        loss = loss + aux_loss(model)  # e.g. MoE load balancing; 0 for most models
        return loss, (nnx.state(model, nnx.Not(nnx.Param)), acc)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step_fn(state, batch):
        params, key = state["params"], jax.random.wrap_key_data(state["rng"])
        has_accuracy = not uses_label_losses(nnx.merge(graphdef, params, state["rest"], copy=True))  # trace time
        key = jax.random.fold_in(key, state["step"])
        if accum == 1:
            (loss, (rest, acc)), grads = grad_fn(params, state["rest"], batch, key)
        else:  # microbatch i = rows i::accum, so every microbatch stays spread over all devices
            micro = jax.tree.map(lambda x: x.reshape(-1, accum, *x.shape[1:]).swapaxes(0, 1), batch)

            def body(carry, xs):
                rest, gsum, lsum, asum = carry
                i, mb = xs
                (loss, (rest, acc)), g = grad_fn(params, rest, mb, jax.random.fold_in(key, i))
                gsum = jax.tree.map(lambda a, b: a + b.astype(jnp.float32), gsum, g)
                return (rest, gsum, lsum + loss, asum + acc), None

            zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
            init = (state["rest"], zeros, jnp.zeros(()), jnp.zeros(()))
            (rest, gsum, lsum, asum), _ = jax.lax.scan(body, init, (jnp.arange(accum), micro))
            grads = jax.tree.map(lambda g, p: (g / accum).astype(p.dtype), gsum, params)
            loss, acc = lsum / accum, asum / accum

        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new_params = optax.apply_updates(params, updates)
        metrics = {
            "loss": loss,
            "accuracy": acc,
            "grad_norm": optax.global_norm(grads),
            "lr": schedule(state["step"]),
        }
        if not has_accuracy:
            del metrics["accuracy"]
        if guard:  # skip a non-finite update and report which tensor went bad first
            flags = jnp.stack(
                [jnp.all(jnp.isfinite(batch["input"])), jnp.isfinite(loss)]
                + [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]
            )
            ok = jnp.all(flags)
            pick = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
            new_params, opt_state = pick(new_params, params), pick(opt_state, state["opt_state"])
            rest = pick(rest, state["rest"])
            metrics["first_nonfinite"] = jnp.where(ok, -1, jnp.argmin(flags))
        new_state = dict(params=new_params, rest=rest, opt_state=opt_state, step=state["step"] + 1, rng=state["rng"])
        return new_state, metrics

    return step_fn


def make_eval_step(graphdef):
    def eval_step(params, rest, batch):
        model = nnx.merge(graphdef, params, rest)
        logits = model(batch["input"], train=False, **model_inputs(batch))
        loss_sum, correct, count = xent_sums(logits, batch["label"], batch["mask"])
        return {"loss_sum": loss_sum, "correct": correct, "count": count}

    return eval_step


def evaluate(eval_step, state, batches) -> dict[str, float]:
    """Accuracy and loss over every example of the eval split (padding masked out); one host sync."""
    sums = None
    for batch in batches:
        out = eval_step(state["params"], state["rest"], batch)
        sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
    sums = jax.device_get(sums)
    return {
        "accuracy": float(sums["correct"] / sums["count"]),
        "loss": float(sums["loss_sum"] / sums["count"]),
    }


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


def abstract_sharded_state(config: ConfigDict, ds_info: dict, tx, mesh, rules):
    """(graphdef, abstract state, state shardings, init_state function) of `config`'s model and optimizer for
    `ds_info`; nothing is allocated. state = {params, rest, opt_state, step, rng}."""
    root_key = jax.random.key(config.seed)
    # train-split label counts, computed only if the model asks (e.g. a unigram proposal or a Huffman tree)
    counts = lambda: data.label_counts(config.data.name, config.data.train_split, config.data.data_dir or None)
    build = lambda rngs: apply_quant(  # config.quant: QuantDense layers (same parameter tree); 'none': unchanged
        models.make(
            config.model,
            input_shape=tuple(ds_info["input_shape"]),
            num_classes=ds_info["num_classes"],
            rngs=rngs,
            label_counts=counts,
        ),
        config.quant.to_dict(),
    )

    def init_state():
        _, params, rest = nnx.split(build(nnx.Rngs(params=jax.random.fold_in(root_key, 0))), nnx.Param, ...)
        rng = jax.random.key_data(jax.random.fold_in(root_key, 1))
        return dict(params=params, rest=rest, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32), rng=rng)

    with nnx.use_eager_sharding(False):
        graphdef = nnx.graphdef(nnx.eval_shape(lambda: build(nnx.Rngs(0))))
        abstract_state = jax.eval_shape(init_state)
    state_sharding = rules_lib.tree_shardings(abstract_state, mesh, rules)
    rules_lib.check_divisible(abstract_state["params"], state_sharding["params"], "params")
    rules_lib.check_divisible(abstract_state, state_sharding, "state")
    return graphdef, abstract_state, state_sharding, init_state


def init_sharded_state(config: ConfigDict, ds_info: dict, tx, mesh, rules):
    """(graphdef, state, state_sharding): the model built for `ds_info` and initialized directly into its
    shardings (no full copy on any device). state = {params, rest, opt_state, step, rng}."""
    graphdef, _, state_sharding, init_state = abstract_sharded_state(config, ds_info, tx, mesh, rules)
    with nnx.use_eager_sharding(False):
        state = jax.jit(init_state, out_shardings=state_sharding)()
    return graphdef, state, state_sharding


def train_and_evaluate(config: ConfigDict, workdir: str, *, devices=None) -> dict[str, float]:
    """Trains `config` in `workdir` (resuming from its latest checkpoint) and returns the final eval metrics.

    `devices` (default: all) is what the mesh is built on; tests use it to compare 1-device and N-device runs."""
    config = config_lib.validate(config)
    if config.train.init_from.startswith(HF_PREFIX):  # before any expensive work: the architectures must agree
        check_hf_architecture(config.train.init_from, config.model)
    is_main = jax.process_index() == 0
    total = config.train.steps

    # ----------------------------------------------------------------------------------------------- mesh
    mesh = make_mesh(config.mesh, devices, config.mesh_dcn)
    rules = rules_lib.resolve(config.sharding.strategy, config.sharding.rules)
    context = lambda: sharding_context(config, mesh, rules)
    batch_sharding = rules_lib.batch_sharding(mesh, rules)
    replicated = NamedSharding(mesh, PartitionSpec())
    log.info("mesh %s on %d devices, strategy %s", dict(mesh.shape), mesh.size, config.sharding.strategy)

    # ----------------------------------------------------------------------------------------------- data
    data_dir = config.data.data_dir or None
    train_source = data.load(config.data.name, config.data.train_split, data_dir)
    eval_source = data.load(config.data.name, config.data.eval_split, data_dir)
    ds_info = data.info(config.data.name, data_dir)
    augment = data.augment.make_augment(config.data.augment.to_dict())
    data.augment.check_config(config.data.augment.to_dict(), tuple(ds_info["input_shape"]))
    if config.data.train_fraction < 1:
        train_source = data.subset.label_fraction(
            train_source, ds_info["label_key"], config.data.train_fraction, config.seed
        )
        log.info("train_fraction %g: %d examples", config.data.train_fraction, len(train_source))
    loader = data.TrainLoader(
        train_source,
        dataset=config.data.name,
        global_batch_size=config.data.batch_size,
        seed=config.seed,
        sharding=batch_sharding,
        prefetch=config.data.prefetch,
        augment=augment,
    )
    eval_batches = lambda: data.eval_batches(
        eval_source, dataset=config.data.name, batch_size=config.data.eval_batch_size, sharding=batch_sharding
    )

    # ------------------------------------------------------------------------------------ model / optimizer
    tx, schedule = optim.make_optimizer(config.optim, total)

    # ----------------------------------------------------------------------------------------------- shard
    graphdef, state, state_sharding = init_sharded_state(config, ds_info, tx, mesh, rules)
    n_params = sum(x.size for x in jax.tree.leaves(state["params"]))
    log.info("model %s: %d parameters", config.model.name, n_params)

    # ----------------------------------------------------------------------------------------------- step
    train_step = jax.jit(
        traced_in(context, make_train_step(graphdef, tx, schedule, config)),
        in_shardings=(state_sharding, batch_sharding),
        out_shardings=(state_sharding, replicated),
        donate_argnums=(0,),
    )
    param_sharding, rest_sharding = state_sharding["params"], state_sharding["rest"]
    eval_step = jax.jit(
        traced_in(context, make_eval_step(graphdef)),
        in_shardings=(param_sharding, rest_sharding, batch_sharding),
        out_shardings=replicated,
    )
    names = guard_names(state["params"])

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
    def run_evals(step: int) -> dict[str, float]:
        results = {f"eval/{k}": v for k, v in evaluate(eval_step, state, eval_batches()).items()}
        writer.write(step, results)
        log.info("step %d: %s", step, results)
        return results

    # ----------------------------------------------------------------------------------------------- loop
    progress = Progress(total, start, enabled=is_main and config.train.progress)
    pending, flags, results = [], [], {}
    step, t0, t_log = start, time.perf_counter(), start
    stream = loader.iterate(start)
    try:
        while step < total:
            state, metrics = train_step(state, next(stream))
            step += 1
            if config.train.nan_guard:
                flags.append((step, metrics.pop("first_nonfinite")))
            pending.append(metrics)
            last = step == total
            if step % config.train.log_every == 0 or last:
                check_finite(flags, names)
                flags = []
                scalars = {f"train/{k}": v for k, v in mean_over_steps(pending).items()}
                scalars["train/steps_per_sec"] = (step - t_log) / (time.perf_counter() - t0)
                writer.write(step, scalars)
                progress.update(step - t_log, {"loss": scalars["train/loss"]})
                pending, t0, t_log = [], time.perf_counter(), step
            if (config.train.eval_every and step % config.train.eval_every == 0) or last:
                results = run_evals(step)
            if (config.train.checkpoint_every and step % config.train.checkpoint_every == 0) or last:
                check_finite(flags, names)
                flags = []
                ckpt.save(step, state, {"step": step, "dataset": config.data.name}, force=last)
        if not results:  # resumed at the end: evaluate what was restored
            results = run_evals(step)
    finally:
        progress.close()
        loader.close()
        ckpt.close()
        writer.close()
    return results
