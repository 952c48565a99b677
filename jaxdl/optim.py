"""Optimizers, schedules, clipping, weight-decay masks and gradual magnitude pruning (`config.optim.prune`) from
`config.optim`, all built from optax.

Gradient accumulation is not here: the trainer's step scans over microbatches inside one jit.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

from jaxdl.config import OPTIM_DEFAULTS

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "adagrad", "rmsprop", "adafactor", "lion")
SCHEDULES = ("constant", "warmup_cosine", "step", "multistep", "linear")
# Optimizers whose optax constructor applies decoupled weight decay itself (AdamW-style, scaled by lr).
DECOUPLED = ("adamw", "lion", "adafactor")
NO_DECAY_NAMES = ("bias", "scale", "embedding_norm")


def defaults() -> ConfigDict:
    """The schema of `config.optim` with its defaults (`jaxdl.config.OPTIM_DEFAULTS`)."""
    return ConfigDict(OPTIM_DEFAULTS)


def _fail(key: str, msg: str):
    raise ValueError(f"config.optim.{key}: {msg}")


def make_schedule(cfg: ConfigDict, total_steps: int) -> optax.Schedule:
    """The learning-rate schedule: optional linear warmup, then constant/cosine/step/multistep/linear."""
    lr, warmup = cfg.lr, cfg.warmup_steps
    if lr <= 0:
        _fail("lr", f"must be > 0, got {lr}")
    if not 0 <= warmup <= total_steps:
        _fail("warmup_steps", f"must be in [0, train.steps={total_steps}], got {warmup}")
    rest = max(total_steps - warmup, 1)
    name = cfg.schedule
    if name == "constant":
        main = optax.constant_schedule(lr)
    elif name == "warmup_cosine":
        main = optax.cosine_decay_schedule(lr, rest, alpha=cfg.end_lr_factor)
    elif name == "linear":
        main = optax.linear_schedule(lr, lr * cfg.end_lr_factor, rest)
    elif name == "step":
        if cfg.step_size <= 0:
            _fail("step_size", f"must be > 0 for schedule='step', got {cfg.step_size}")
        main = optax.exponential_decay(lr, cfg.step_size, cfg.decay_factor, staircase=True)
    elif name == "multistep":
        bounds = [b for b in cfg.boundaries if b > 0]
        if not bounds or any(b <= a for a, b in zip(bounds, bounds[1:], strict=False)):
            _fail(
                "boundaries",
                f"must be increasing positive steps for schedule='multistep', got {cfg.boundaries}",
            )
        main = optax.piecewise_constant_schedule(lr, {b - warmup: cfg.decay_factor for b in bounds})
    else:
        _fail("schedule", f"{name!r} is not one of {SCHEDULES}")
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def _path_names(path) -> list[str]:
    names = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                names.append(str(getattr(k, attr)))
                break
    return names


def decay_mask(params):
    """True where weight decay applies: arrays with ndim >= 2 outside norm layers, not biases or scales."""

    def keep(path, x):
        names = [n.lower() for n in _path_names(path)]
        if jnp.ndim(x) < 2 or any(n in NO_DECAY_NAMES for n in names):
            return False
        return not any("norm" in n for n in names)

    return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(cfg: ConfigDict, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optimizer, schedule) for `config.optim`; errors name the bad key."""
    for key in defaults():
        if key not in cfg:
            _fail(key, "is missing (build the config on jaxdl.config.base())")
    for key in defaults().prune:
        if key not in cfg.prune:
            _fail(f"prune.{key}", "is missing (build the config on jaxdl.config.base())")
    schedule = make_schedule(cfg, total_steps)
    if cfg.weight_decay < 0:
        _fail("weight_decay", f"must be >= 0, got {cfg.weight_decay}")
    if cfg.wd_mask not in ("no_norm_bias", "all"):
        _fail("wd_mask", f"{cfg.wd_mask!r} is not 'no_norm_bias' or 'all'")
    if cfg.clip_norm < 0:
        _fail("clip_norm", f"must be >= 0, got {cfg.clip_norm}")
    mask: Callable | None = decay_mask if cfg.wd_mask == "no_norm_bias" else None
    wd = cfg.weight_decay
    name = cfg.name
    if name == "sgd":
        opt = optax.sgd(schedule)
    elif name in ("momentum", "nesterov"):
        opt = optax.sgd(schedule, momentum=cfg.momentum, nesterov=name == "nesterov")
    elif name == "adam":
        opt = optax.adam(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    elif name == "adamw":
        opt = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=wd, mask=mask)
    elif name == "adagrad":
        opt = optax.adagrad(schedule, eps=cfg.eps)
    elif name == "rmsprop":
        opt = optax.rmsprop(schedule, eps=cfg.eps, momentum=cfg.momentum or None)
    elif name == "adafactor":
        opt = optax.adafactor(schedule, weight_decay_rate=wd or None, weight_decay_mask=mask)
    elif name == "lion":
        b2 = 0.99 if cfg.b2 == 0.999 else cfg.b2
        opt = optax.lion(schedule, b1=cfg.b1, b2=b2, weight_decay=wd, mask=mask)
    else:
        _fail("name", f"{name!r} is not one of {OPTIMIZERS}")
    chain = []
    if cfg.clip_norm > 0:
        chain.append(optax.clip_by_global_norm(cfg.clip_norm))
    if wd > 0 and name not in DECOUPLED:
        chain.append(optax.add_decayed_weights(wd, mask=mask))  # L2: added to the gradient before scaling
    prune = make_prune(cfg.prune, total_steps)
    return optax.chain(*chain, opt, *([prune] if prune is not None else [])), schedule


PRUNE_SCOPES = ("global", "layer")


def prune_selector(names: str) -> Callable:
    """params -> bool pytree: True on floating leaves with ndim >= 2 whose own name (the last path entry that is
    not nnx's `value`) is one of the comma-separated `names` (e.g. "kernel"; biases and norm scales are 1-D)."""
    wanted = {n.strip() for n in names.split(",") if n.strip()}

    def select(params):
        def keep(path, x):
            own = [n for n in _path_names(path) if n != "value"]
            floating = jnp.issubdtype(jnp.result_type(x), jnp.floating)
            return bool(own) and own[-1] in wanted and jnp.ndim(x) >= 2 and floating

        return jax.tree_util.tree_map_with_path(keep, params)

    return select


def make_prune(cfg: ConfigDict, total_steps: int) -> optax.GradientTransformation | None:
    """`config.optim.prune` -> the Zhu & Gupta gradual magnitude-pruning transformation chained after the optimizer
    (`jaxdl.compress.prune.magnitude_prune` with `cubic_schedule`), or None when `target` is 0.

    The mask is updated every `every` steps from `begin_step` to `end_step` (sparsity rising as the cubic schedule
    says, exactly `target` from `end_step` on) and pruned weights are held at exactly 0 by every step in between."""
    from jaxdl.compress.prune import cubic_schedule, magnitude_prune  # compress imports optax only

    if not 0.0 <= cfg.target < 1.0:
        _fail("prune.target", f"must be in [0, 1), got {cfg.target}")
    if cfg.target == 0.0:
        return None
    if cfg.scope not in PRUNE_SCOPES:
        _fail("prune.scope", f"{cfg.scope!r} is not one of {PRUNE_SCOPES}")
    if not cfg.params.strip(","):
        _fail("prune.params", "must name at least one parameter leaf (e.g. 'kernel')")
    every, begin = cfg.every, cfg.begin_step
    if every < 1:
        _fail("prune.every", f"must be >= 1, got {every}")
    if not 0 <= begin < total_steps:
        _fail("prune.begin_step", f"must be in [0, train.steps={total_steps}), got {begin}")
    if cfg.end_step == 0:
        end = begin + max((int(0.75 * total_steps) - begin) // every, 0) * every
    else:
        end = cfg.end_step
        if not begin <= end < total_steps:
            _fail("prune.end_step", f"must be in [begin_step={begin}, train.steps={total_steps}), got {end}")
        if (end - begin) % every:
            _fail("prune.end_step", f"end_step - begin_step = {end - begin} must be a multiple of every={every}")
    schedule = cubic_schedule(cfg.target, begin_step=begin, end_step=end, update_every=every)
    return magnitude_prune(schedule, scope=cfg.scope, prunable=prune_selector(cfg.params))
