"""Config plumbing: the schema every experiment config starts from, `:arg` parsing, the smoke shrink, validation.

An experiment file defines `get_config(arg)` that starts from `base()` and sets fields; it is launched with
`python -m jaxdl.main --config=experiments/<study>/<file>.py:<arg> --config.a.b=v --workdir=DIR`.
`validate` runs before anything compiles and names the bad key: unknown keys, wrong types, missing required
fields, bad model / task / evaluator arguments. This module imports only ml_collections at load time (an
experiment config file pulls in no jax, TFDS or kernels); `validate` imports the checkers it needs.
"""

import json
import os
import types
from collections.abc import Mapping
from typing import Any

from ml_collections import ConfigDict

# mesh axis names (jaxdl.parallel.mesh builds meshes over them)
AXES = ("data", "fsdp", "sequence", "tensor", "expert", "pipeline")
# the schema of config.optim (jaxdl.optim.make_optimizer reads it)
OPTIM_DEFAULTS = dict(
    name="adam",
    lr=1e-3,  # peak learning rate
    schedule="constant",
    warmup_steps=0,  # linear warmup from 0, before any schedule
    end_lr_factor=0.0,  # warmup_cosine / linear: final lr = lr * end_lr_factor
    step_size=0,  # step: multiply by decay_factor every step_size steps
    boundaries=(0,),  # multistep: multiply by decay_factor at each of these steps (0 entries ignored)
    decay_factor=0.1,
    momentum=0.9,  # momentum / nesterov / rmsprop
    b1=0.9,  # adam / adamw / lion / adafactor (adafactor: momentum if > 0 ... see make_optimizer)
    b2=0.999,  # adam / adamw; lion uses 0.99 when this is left at 0.999
    eps=1e-8,
    weight_decay=0.0,  # decoupled for adamw/lion/adafactor, L2 added to the gradient otherwise
    wd_mask="no_norm_bias",  # or "all"
    clip_norm=0.0,  # global-norm clipping before the optimizer; 0 = off
    # magnitude pruning during training (jaxdl.compress.prune, Zhu & Gupta cubic schedule); target 0 = off
    prune=dict(
        target=0.0,  # final sparsity in [0, 1)
        begin_step=0,  # first mask update
        end_step=0,  # last mask update (reaches target); 0 = 3/4 of train.steps, rounded down to a multiple of every
        every=100,  # steps between mask updates
        scope="global",  # global: rank all pruned weights together; layer: the target in every leaf
        params="kernel",  # comma-separated leaf names to prune (e.g. "kernel,embedding"); biases/norms never
    ),
)
# the schema of config.data.augment (jaxdl.data.augment)
CACHE_MODES = ("auto", "memory", "stream")  # config.data.cache (jaxdl.data.memory)
AUGMENT_DEFAULTS = dict(crop_padding=0, flip=False, mixup_alpha=0.0, cutmix_alpha=0.0, mlm_probability=0.0)
# sections whose keys are free-form here and checked by their owner (model / task / evaluator arguments)
FREE_FORM = ("config.model", "config.task", "config.evals", "config.optim_groups")


def base() -> ConfigDict:
    """The schema with defaults. `model` is free-form past `name` (checked against the model's arguments)."""
    c = ConfigDict()
    c.seed = 0
    c.mesh = ConfigDict({a: (-1 if a == "data" else 1) for a in AXES})  # within a slice/host (ICI)
    c.mesh_dcn = ConfigDict({a: 1 for a in AXES})  # across slices/hosts (DCN); all 1 = a flat mesh
    c.sharding = ConfigDict()
    c.sharding.strategy = "dp"  # "+"-joined components of jaxdl.parallel.rules.COMPONENTS, e.g. "fsdp+tp"
    c.sharding.rules = ()  # extra (logical, mesh_axes) rules, placed before the strategy's
    c.sharding.pipeline_microbatches = 0  # 0 = as many as pipeline stages
    c.sharding.pipeline_schedule = "gpipe"  # or "circular"
    c.sharding.pipeline_repeats = 1  # circular: times each microbatch loops over the stages

    c.data = ConfigDict()
    c.data.name = ""  # required: a jaxdl.data registry name
    c.data.data_dir = ""  # "" = $JAXDL_DATA_DIR or ~/.cache/jaxdl/tensorflow_datasets
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.batch_size = 128  # global batch (all processes, all microbatches)
    c.data.eval_batch_size = 1000
    c.data.prefetch = 2
    c.data.order = "shuffle"  # or "sequential": the train split in source order every epoch (jaxdl.data.pipeline)
    c.data.buckets = ()  # increasing input lengths (axis 1): train batches padded to the smallest (jaxdl.data.buckets)
    c.data.cache = "auto"  # splits within memory_budget_mb are decoded once into memory (jaxdl.data.memory)
    c.data.memory_budget_mb = 4096.0  # per split and process; "memory": over it is an error, "auto": it streams
    c.data.workers = -1  # train batches made ahead by N threads; 0: inline; -1: inline in memory, else 2 threads
    c.data.train_fraction = 1.0  # < 1: a class-stratified subset of the train split (jaxdl.data.subset), seeded
    c.data.augment = ConfigDict(AUGMENT_DEFAULTS)  # train-time image augmentation (jaxdl.data.augment)

    c.model = ConfigDict(dict(name=""), type_safe=False)  # a jaxdl.models name + its arguments (the task checks)
    c.task = ConfigDict(dict(name="classify"), type_safe=False)  # a jaxdl.tasks name + its options
    c.evals = ConfigDict(type_safe=False)  # name -> dict(kind=..., every=..., ...); empty: the task's defaults
    c.optim = ConfigDict(OPTIM_DEFAULTS)
    c.optim_groups = ConfigDict(type_safe=False)  # parameter group -> config.optim overrides (tasks with groups)

    c.quant = ConfigDict()  # jaxdl.layers.quantized: every 2-D dense layer becomes a QuantDense
    c.quant.mode = "none"  # none | w8a8 | w8a16 | w4a16
    c.quant.impl = "auto"  # kernels.int8_matmul.api impl for the int8/int4 inference form
    c.quant.qat = False  # train with fake quantization (straight-through estimator)
    c.quant.group_size = 128  # w4a16: rows of K per scale (>= K: one group per column)

    c.train = ConfigDict()
    c.train.steps = 1000
    c.train.grad_accum = 1  # microbatches per step (scan inside the jitted step)
    c.train.log_every = 100
    c.train.eval_every = 500  # also at the end; 0 = only at the end
    c.train.checkpoint_every = 500  # also at the end; 0 = only at the end
    c.train.keep_checkpoints = 3
    c.train.async_checkpoints = True
    c.train.nan_guard = True  # skip non-finite updates and stop, naming the step and tensor
    c.train.progress = True  # progress bar on stderr
    c.train.init_from = ""  # a finished run's workdir: start from its params/batch stats where names+shapes match
    c.train.init_exclude = ""  # with init_from: comma-separated path substrings to keep fresh (e.g. "head")
    c.train.ema_decay = 0.0  # > 0: keep state["ema"], an exponential moving average of the parameters
    c.lock()  # a typo'd key in an experiment file fails at once; `config.model` is replaced, so stays free-form
    for section in FREE_FORM:  # their keys are the owner's to check: configs may add them (`c.evals.beam = ...`)
        c[section.removeprefix("config.")].unlock()
    return c


def parse_arg(arg: str | None, **spec: Any) -> types.SimpleNamespace:
    """Typed parsing of a config file's `:arg`, comma-separated tokens. `spec` says what each field is:

    - a tuple of strings: exactly one token must be one of them (e.g. `model=("cnn", "gru")`);
    - `bool`: a flag, True when its name is a token (e.g. `shuffled=bool`);
    - a str / int / float default: an optional `name=value` token of that type (e.g. `root=""`, `steps=0`).

    `smoke` is always accepted. `parse_arg("gru,shuffled,smoke", model=("cnn", "gru"), shuffled=bool)` ->
    namespace(model="gru", shuffled=True, smoke=True). A bad token fails naming it and listing what is expected."""
    tokens = [t for t in (arg or "").split(",") if t]
    out = {"smoke": "smoke" in tokens}
    expected = " ".join(_describe(k, v) for k, v in spec.items()) + " [,smoke]"
    fail = lambda why: ValueError(f"config arg {arg!r}: {why}; expected {expected.strip()}")
    for key, kind in spec.items():
        if isinstance(kind, tuple):
            hits = [t for t in tokens if t in kind]
            if len(hits) != 1:
                raise fail(f"need exactly one {key} of {'|'.join(kind)}, got {hits or 'none'}")
            out[key] = hits[0]
        elif kind is bool:
            out[key] = key in tokens
        elif isinstance(kind, str | int | float) and not isinstance(kind, bool):
            values = [t.split("=", 1)[1] for t in tokens if t.startswith(f"{key}=")]
            if len(values) > 1:
                raise fail(f"{key}= given {len(values)} times")
            try:
                out[key] = type(kind)(values[0]) if values else kind
            except ValueError:
                raise fail(f"{key}={values[0]!r} is not of type {type(kind).__name__}") from None
        else:
            raise TypeError(f"parse_arg spec {key}={kind!r}: use a tuple of choices, bool, or a str/int/float default")
    known = {"smoke"} | {k for k, v in spec.items() if v is bool}
    known |= {t for v in spec.values() if isinstance(v, tuple) for t in v}
    for t in tokens:
        if t not in known and t.split("=", 1)[0] not in spec:
            raise fail(f"unknown token {t!r}")
    return types.SimpleNamespace(**out)


def _describe(key: str, kind: Any) -> str:
    if isinstance(kind, tuple):
        return f"<{key}: {'|'.join(kind)}>"
    if kind is bool:
        return f"[,{key}]"
    return f"[,{key}=<{type(kind).__name__}>]"


def shrink_for_smoke(c: ConfigDict) -> ConfigDict:
    """Shrinks any config to run in seconds: few steps, small eval batch, frequent evals/checkpoints."""
    c.train.steps = min(c.train.steps, 30)
    c.train.log_every = 10
    c.train.eval_every = 15
    c.train.checkpoint_every = 15
    c.data.batch_size = min(c.data.batch_size, 32)
    c.data.eval_batch_size = min(c.data.eval_batch_size, 256)
    c.optim.warmup_steps = min(c.optim.warmup_steps, 5)
    if c.optim.schedule == "step":
        c.optim.step_size = min(max(c.optim.step_size, 1), 10)
    if c.optim.schedule == "multistep":
        c.optim.boundaries = tuple(b for b in (10, 20))
    return c


def _compatible(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    if isinstance(default, tuple | list):
        return isinstance(value, tuple | list)
    return isinstance(value, type(default))


def _check_against(schema: Mapping, cfg: Mapping, prefix: str) -> None:
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if key not in schema:
            raise ValueError(
                f"config key {path!r} is unknown; known keys under {prefix or 'config.'}: {sorted(schema)}"
            )
        default = schema[key]
        if isinstance(default, ConfigDict | Mapping) and path not in FREE_FORM:
            if not isinstance(value, ConfigDict | Mapping):
                raise TypeError(f"config key {path!r} must be a dict, got {type(value).__name__}")
            _check_against(default, value, path + ".")
        elif not _compatible(default, value):
            raise TypeError(
                f"config key {path!r} has type {type(value).__name__} ({value!r}); expected {type(default).__name__}"
            )


def validate(config: ConfigDict) -> ConfigDict:
    """Checks `config` against `base()`, the task, the model's arguments, the evaluators and the optimizer;
    returns it locked."""
    from jaxdl import evaluators, optim, tasks
    from jaxdl.data import augment
    from jaxdl.layers import quantized
    from jaxdl.layers.remat import check_policy
    from jaxdl.parallel import rules as rules_lib

    schema = base()
    for section in schema:
        if section not in config:
            raise ValueError(f"config.{section} is missing: build configs on jaxdl.config.base()")
    _check_against(schema, config, "config.")
    task = tasks.make(config.task)
    if not config.data.name and not task.produces_batches:
        raise ValueError("config.data.name is required (it is empty)")
    task.check_model_config(config.model)
    check_policy(config.model.get("remat", "none"))
    evaluators.check_specs(evaluators.specs(config, task))
    groups = task.groups or ()
    for group, overrides in config.optim_groups.items():
        if group not in groups:
            raise ValueError(
                f"config.optim_groups.{group}: task {config.task.name!r} has parameter groups {list(groups)}"
            )
        for key in overrides:
            if key not in OPTIM_DEFAULTS:
                raise ValueError(
                    f"config.optim_groups.{group}.{key} is not a config.optim key: {sorted(OPTIM_DEFAULTS)}"
                )
        cfg = ConfigDict(config.optim.to_dict())
        cfg.update(dict(overrides))
        optim.make_optimizer(cfg, config.train.steps)
    augment.check_keys(config.data.augment.to_dict())
    quantized.check_config(config.quant.to_dict())
    for key in ("steps", "log_every", "keep_checkpoints", "grad_accum"):
        if config.train[key] < 1:
            raise ValueError(f"config.train.{key} must be >= 1, got {config.train[key]}")
    if not 0 <= config.train.ema_decay < 1:
        raise ValueError(f"config.train.ema_decay must be in [0, 1), got {config.train.ema_decay}")
    for key in ("batch_size", "eval_batch_size"):
        if config.data[key] < 1:
            raise ValueError(f"config.data.{key} must be >= 1, got {config.data[key]}")
    if not 0 < config.data.train_fraction <= 1:
        raise ValueError(f"config.data.train_fraction must be in (0, 1], got {config.data.train_fraction}")
    if config.data.cache not in CACHE_MODES:
        raise ValueError(f"config.data.cache={config.data.cache!r} is not one of {CACHE_MODES}")
    if not config.data.memory_budget_mb > 0:
        raise ValueError(
            f"config.data.memory_budget_mb must be > 0, got {config.data.memory_budget_mb} (config.data.cache="
            "'stream' never holds a split in memory)"
        )
    if config.data.workers < -1:
        raise ValueError(f"config.data.workers must be >= -1, got {config.data.workers}")
    if config.data.order not in ("shuffle", "sequential"):
        raise ValueError(f"config.data.order={config.data.order!r}: use 'shuffle' or 'sequential'")
    if config.data.batch_size % config.train.grad_accum:
        raise ValueError(
            f"config.data.batch_size={config.data.batch_size} is not divisible by "
            f"config.train.grad_accum={config.train.grad_accum}"
        )
    optim.make_optimizer(config.optim, config.train.steps)
    rules_lib.resolve(config.sharding.strategy, config.sharding.rules)
    if config.sharding.pipeline_schedule not in ("gpipe", "circular"):
        raise ValueError(
            f"config.sharding.pipeline_schedule={config.sharding.pipeline_schedule!r}: use 'gpipe' or 'circular'"
        )
    config.lock()
    return config


def _merge_saved(target: ConfigDict, values: Mapping, prefix: str = "config") -> None:
    """Sets `values` (a config.json dict) into `target`: lists back to tuples, free-form sections whole."""
    for key, value in values.items():
        path = f"{prefix}.{key}"
        default = target.get(key) if key in target else None
        if path in FREE_FORM:
            target[key] = ConfigDict(value, type_safe=False)
        elif isinstance(default, ConfigDict):
            _merge_saved(default, value, path)
        else:
            if isinstance(default, tuple) and isinstance(value, list):
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            target[key] = value


def load_run_config(workdir: str) -> ConfigDict:
    """The validated config a trainer run wrote to `<workdir>/config.json` (keys added to the schema since then
    take their defaults)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist: is {workdir!r} a jaxdl run workdir?")
    with open(path) as f:
        values = json.load(f)
    config = base()
    with config.unlocked():
        _merge_saved(config, values)
    return validate(config)
