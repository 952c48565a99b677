"""Multinomial logistic regression: one linear layer on the flattened input."""

import math

import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.dense import dense
from jaxdl.models.basic import _torch_init


class Model(nnx.Module):
    """[batch, *input_shape] -> logits [batch, num_classes] (float32)."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        dtype: str = "float32",
        param_dtype: str = "float32",
        remat: str = "none",
        init: str = "flax",
        rngs: nnx.Rngs,
    ):
        """init: "flax" (LeCun-normal kernel, zero bias) or "torch" (torch.nn.Linear's U(+-1/sqrt(fan_in)))."""
        del remat  # a single layer: nothing to rematerialize
        _torch_init.check(init, "logistic")
        din = math.prod(input_shape)
        make = _torch_init.dense if init == "torch" else dense
        self.head = make(din, num_classes, ("embed", "vocab"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jnp.ndarray, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jnp.ndarray:
        return self.head(x.reshape(x.shape[0], -1)).astype(jnp.float32)
