"""Embedding tables of the recommenders: rows carry logical axis "vocab", columns "embed"."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.layers.dtypes import to_dtype


def check_sizes(model: str, input_shape: tuple, **sizes: int) -> None:
    """The checks every recsys model makes first: "input" is user ids int [batch] (input_shape ()), and every
    table size / width in `sizes` (num_users, num_items, dim, ...) is positive; errors name the model and key."""
    if tuple(input_shape) != ():
        raise ValueError(f"{model} takes user ids int [batch] (input_shape ()), got input_shape {input_shape}")
    bad = {k: v for k, v in sizes.items() if v < 1}
    if bad:
        raise ValueError(f"{model}: {', '.join(f'{k}={v}' for k, v in bad.items())} must be positive")


def check_ids(model: str, ids: jax.Array, n: int, what: str) -> None:
    """ValueError naming the model, the field and the first id outside [0, n), e.g. "deepfm: item id 1682 is
    outside the table of 1682 items [0, 1682)". Needs concrete ids: skipped under jit (tracers), where
    `jnp.take` would clamp instead."""
    if isinstance(ids, jax.core.Tracer) or not np.size(ids):
        return
    ids = np.asarray(ids)
    if (bad := ids[(ids < 0) | (ids >= n)]).size:
        raise ValueError(f"{model}: {what} id {int(bad.flat[0])} is outside the table of {n} {what}s [0, {n})")


def padded(rows: int, multiple: int) -> int:
    if multiple < 1:
        raise ValueError(f"row_multiple={multiple} must be >= 1")
    return math.ceil(rows / multiple) * multiple


def table(rows: int, dim: int, *, std: float, row_multiple: int, param_dtype: str, rngs: nnx.Rngs) -> nnx.Param:
    """float [padded(rows), dim] ~ N(0, std^2), logical axes ("vocab", "embed")."""
    init = nnx.with_partitioning(nnx.initializers.normal(std), ("vocab", "embed"))
    return nnx.Param(init(rngs.params(), (padded(rows, row_multiple), dim), to_dtype(param_dtype)))


def bias(rows: int, *, row_multiple: int, param_dtype: str) -> nnx.Param:
    """float [padded(rows)] zeros, logical axis ("vocab",)."""
    init = nnx.with_partitioning(nnx.initializers.zeros, ("vocab",))
    return nnx.Param(init(None, (padded(rows, row_multiple),), to_dtype(param_dtype)))


def lookup(param: nnx.Param, ids: jax.Array, dtype: str = "float32") -> jax.Array:
    """Rows `ids` (int [...]) of the table: [..., dim] (or [...] for a bias), cast to `dtype`."""
    return jnp.take(param[...], ids, axis=0).astype(to_dtype(dtype))
