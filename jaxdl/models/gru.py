"""Bidirectional GRU of the MNIST-1D paper: hidden 6 per direction, all time steps flattened into the head."""

import jax.numpy as jnp
from flax import nnx

from jaxdl.models._common import dense, to_dtype


class Model(nnx.Module):
    """[batch, time] or [batch, time, features] -> logits [batch, num_classes] (float32)."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        hidden: int = 6,
        bidirectional: bool = True,
        dtype: str = "float32",
        param_dtype: str = "float32",
        remat: str = "none",
        rngs: nnx.Rngs,
    ):
        del remat  # the scan over time is the only block; nothing to gain at these sizes
        time, feat = (input_shape[0], 1) if len(input_shape) == 1 else input_shape
        kw = dict(dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
        self.forward = nnx.RNN(nnx.GRUCell(feat, hidden, **kw))
        self.backward = nnx.RNN(nnx.GRUCell(feat, hidden, **kw)) if bidirectional else None
        self.hidden, self.carry_dtype = hidden, to_dtype(param_dtype)
        width = hidden * (2 if bidirectional else 1)
        self.head = dense(time * width, num_classes, ("mlp", "vocab"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jnp.ndarray, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jnp.ndarray:
        x = x[..., None] if x.ndim == 2 else x
        # An explicit zero carry: letting nnx.RNN draw it from its stored Rngs fails under jit (trace-level error).
        zeros = jnp.zeros((x.shape[0], self.hidden), self.carry_dtype)
        h = self.forward(x, initial_carry=zeros)
        if self.backward is not None:
            h = jnp.concatenate([h, self.backward(x, initial_carry=zeros, reverse=True, keep_order=True)], -1)
        return self.head(h.reshape(h.shape[0], -1)).astype(jnp.float32)
