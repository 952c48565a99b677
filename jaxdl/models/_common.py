"""Bits shared by the model modules: dtype names, a partitioned dense layer."""

import jax
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


class AuxLoss(nnx.Variable):
    """A scalar a model sets during its forward pass (e.g. MoE load balancing, already weighted); the trainer
    adds every AuxLoss of the model to the training loss."""


def aux_loss(model: nnx.Module) -> jax.Array:
    """Sum of the model's AuxLoss variables (0.0 when it has none)."""
    return sum(jax.tree.leaves(nnx.state(model, AuxLoss)), jnp.zeros((), jnp.float32))
