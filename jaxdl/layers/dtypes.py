"""Dtype names as the configs spell them (`config.model.dtype` / `param_dtype`) -> jnp dtypes."""

import jax.numpy as jnp

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def to_dtype(name: str):
    """ "float32" | "bfloat16" | "float16" -> the jnp dtype; a ValueError naming the config keys otherwise."""
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is not one of {sorted(DTYPES)} (config.model.dtype / param_dtype)")
    return DTYPES[name]
