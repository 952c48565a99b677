"""Normalization by name, for the norm ablations: `make_norm("batch" | "group" | "layer" | "none", channels)`
and `apply_norm(norm, x, train)` (BatchNorm normalizes with batch statistics in training, running averages in
evaluation; the running averages are `nnx.BatchStat` variables the trainer carries in its non-param state).
"""

import jax
from flax import nnx

from jaxdl.models._common import to_dtype

NORMS = ("batch", "group", "layer", "none")


def check_norm(kind: str, key: str = "config.model.norm") -> None:
    if kind not in NORMS:
        raise ValueError(f"{key}={kind!r} is not a normalization; choose one of {NORMS}")


def make_norm(
    kind: str, channels: int, *, groups: int = 8, dtype: str = "float32", param_dtype: str = "float32", rngs: nnx.Rngs
) -> nnx.Module | None:
    """A norm over the last (channel) axis; GroupNorm uses min(groups, channels) groups (must divide channels)."""
    check_norm(kind)
    kw = dict(dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
    if kind == "batch":
        return nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, **kw)
    if kind == "group":
        g = min(groups, channels)
        if channels % g:
            raise ValueError(f"config.model.groups={groups} does not divide {channels} channels (GroupNorm)")
        return nnx.GroupNorm(channels, num_groups=g, **kw)
    if kind == "layer":
        return nnx.LayerNorm(channels, **kw)
    return None


def apply_norm(norm: nnx.Module | None, x: jax.Array, train: bool) -> jax.Array:
    if norm is None:
        return x
    if isinstance(norm, nnx.BatchNorm):
        return norm(x, use_running_average=not train)
    return norm(x)
