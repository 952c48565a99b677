"""Normalization layers by name: the one place models build a BatchNorm, GroupNorm, LayerNorm or RMSNorm.

`make_norm(kind, features, ...)` with kind "batch" | "group" | "layer" | "rms" | "none" normalizes over the last
(feature/channel) axis of `[..., features]`; `apply_norm(norm, x, train)` runs it (BatchNorm normalizes with batch
statistics in training and running averages in evaluation; the averages are `nnx.BatchStat` variables the trainer
carries in its non-param state). `axes` names the logical axis of the scale/bias vectors (e.g. ("embed",) in the
transformer families, so the sharding rules of `jaxdl.parallel.rules` see them); without it they carry no name.
"""

import jax
from flax import nnx

from jaxdl.layers.dtypes import to_dtype

NORMS = ("batch", "group", "layer", "rms", "none")
DEFAULT_EPS = {"batch": 1e-5, "group": 1e-6, "layer": 1e-6, "rms": 1e-6}  # BatchNorm: PyTorch's; others: flax's


def check_norm(kind: str, key: str = "config.model.norm", choices: tuple[str, ...] = NORMS) -> None:
    """ValueError naming `key` unless `kind` is one of `choices`."""
    if kind not in choices:
        raise ValueError(f"{key}={kind!r} is not a normalization; choose one of {choices}")


def make_norm(
    kind: str,
    features: int,
    *,
    eps: float | None = None,
    groups: int = 8,
    axes: tuple[str | None] | None = None,
    dtype: str = "float32",
    param_dtype: str = "float32",
    rngs: nnx.Rngs,
) -> nnx.Module | None:
    """A norm over the last axis of [..., features] (None for "none"); output in `dtype`, scale/bias [features]
    in `param_dtype` (scale 1, bias 0; RMSNorm has no bias).

    eps: None = DEFAULT_EPS[kind]. groups: GroupNorm uses min(groups, features) groups, which must divide
    features. axes: the logical axis name of the [features] scale/bias (1-tuple), or None for none."""
    check_norm(kind)
    if kind == "none":
        return None
    if eps is None:
        eps = DEFAULT_EPS[kind]
    if not eps > 0:
        raise ValueError(f"norm epsilon must be > 0, got {eps} (config.model.norm_eps / layer_norm_eps)")
    kw = dict(epsilon=eps, dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
    if axes is not None:
        if len(axes) != 1:
            raise ValueError(f"norm axes: expected one logical name for the [features] scale, got {axes!r}")
        kw["scale_init"] = nnx.with_partitioning(nnx.initializers.ones, tuple(axes))
        if kind != "rms":
            kw["bias_init"] = nnx.with_partitioning(nnx.initializers.zeros, tuple(axes))
    if kind == "batch":
        return nnx.BatchNorm(features, momentum=0.9, **kw)
    if kind == "group":
        g = min(groups, features)
        if features % g:
            raise ValueError(f"config.model.groups={groups} does not divide {features} channels (GroupNorm)")
        return nnx.GroupNorm(features, num_groups=g, **kw)
    if kind == "rms":
        return nnx.RMSNorm(features, **kw)
    return nnx.LayerNorm(features, **kw)


def apply_norm(norm: nnx.Module | None, x: jax.Array, train: bool) -> jax.Array:
    """x [..., features] normalized by `norm` (identity for None); BatchNorm uses batch statistics iff train."""
    if norm is None:
        return x
    if isinstance(norm, nnx.BatchNorm):
        return norm(x, use_running_average=not train)
    return norm(x)
