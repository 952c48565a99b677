"""Auxiliary losses a model produces in its forward pass (e.g. MoE load balancing), collected by the trainer."""

import jax
import jax.numpy as jnp
from flax import nnx


class AuxLoss(nnx.Variable):
    """A float32 scalar a model sets during its forward pass (already weighted); the trainer adds every AuxLoss of
    the model to the training loss. Not an `nnx.Param`: optimizers never see it."""


def aux_loss(model: nnx.Module) -> jax.Array:
    """Sum of the model's AuxLoss variables: float32 [] (0.0 when it has none)."""
    return sum(jax.tree.leaves(nnx.state(model, AuxLoss)), jnp.zeros((), jnp.float32))
