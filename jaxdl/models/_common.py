"""Bits shared by the model modules: dtype names, a partitioned dense layer."""

import jax.numpy as jnp
from flax import nnx

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def to_dtype(name: str):
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is not one of {sorted(DTYPES)} (config.model.dtype / param_dtype)")
    return DTYPES[name]


def dense(din: int, dout: int, axes: tuple[str, str], *, dtype: str, param_dtype: str, rngs: nnx.Rngs) -> nnx.Linear:
    """nnx.Linear whose kernel carries logical axis names `axes`."""
    return nnx.Linear(
        din,
        dout,
        dtype=to_dtype(dtype),
        param_dtype=to_dtype(param_dtype),
        kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), axes),
        rngs=rngs,
    )
