"""Config plumbing: the schema every experiment config starts from, `:arg` parsing, the smoke shrink, validation.

An experiment file defines `get_config(arg)` that starts from `base()` and sets fields; it is launched with
`python -m jaxdl.main --config=experiments/<study>/<file>.py:<arg> --config.a.b=v --workdir=DIR`.
`validate` runs before anything compiles and names the bad key: unknown keys, wrong types, missing required
fields, bad model arguments.
"""

from collections.abc import Mapping
from typing import Any

from ml_collections import ConfigDict

from jaxdl import models, optim
from jaxdl.data import augment
from jaxdl.layers import quantized
from jaxdl.layers.remat import check_policy
from jaxdl.parallel import rules as rules_lib
from jaxdl.parallel.mesh import AXES

REQUIRED = ("data.name", "model.name")


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
    c.data.train_fraction = 1.0  # < 1: a class-stratified subset of the train split (jaxdl.data.subset), seeded
    c.data.augment = ConfigDict(augment.DEFAULTS)  # train-time image augmentation (jaxdl.data.augment)

    c.model = ConfigDict(dict(name=""), type_safe=False)  # required: a jaxdl.models module name
    c.optim = optim.defaults()

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
    c.lock()  # a typo'd key in an experiment file fails at once; `config.model` is replaced, so stays free-form
    return c


def parse_arg(arg: str | None) -> tuple[list[str], bool]:
    """`"cnn,smoke"` -> (["cnn"], True). The `smoke` token may appear in any config's arg."""
    tokens = [t for t in (arg or "").split(",") if t]
    return [t for t in tokens if t != "smoke"], "smoke" in tokens


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
        if isinstance(default, ConfigDict | Mapping) and path != "config.model":
            if not isinstance(value, ConfigDict | Mapping):
                raise TypeError(f"config key {path!r} must be a dict, got {type(value).__name__}")
            _check_against(default, value, path + ".")
        elif not _compatible(default, value):
            raise TypeError(
                f"config key {path!r} has type {type(value).__name__} ({value!r}); expected {type(default).__name__}"
            )


def validate(config: ConfigDict) -> ConfigDict:
    """Checks `config` against `base()`, the model's arguments and the optimizer; returns it locked."""
    schema = base()
    for section in schema:
        if section not in config:
            raise ValueError(f"config.{section} is missing: build configs on jaxdl.config.base()")
    _check_against(schema, config, "config.")
    for path in REQUIRED:
        section, key = path.split(".")
        if not config.get(section, {}).get(key):
            raise ValueError(f"config.{path} is required (it is empty)")
    models.check_kwargs(config.model.name, {k: v for k, v in config.model.items() if k != "name"})
    check_policy(config.model.get("remat", "none"))
    quantized.check_config(config.quant.to_dict())
    for key in ("steps", "log_every", "keep_checkpoints", "grad_accum"):
        if config.train[key] < 1:
            raise ValueError(f"config.train.{key} must be >= 1, got {config.train[key]}")
    for key in ("batch_size", "eval_batch_size"):
        if config.data[key] < 1:
            raise ValueError(f"config.data.{key} must be >= 1, got {config.data[key]}")
    if not 0 < config.data.train_fraction <= 1:
        raise ValueError(f"config.data.train_fraction must be in (0, 1], got {config.data.train_fraction}")
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
