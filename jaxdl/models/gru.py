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
        cell = lambda: nnx.GRUCell(feat, hidden, **kw)
        if bidirectional:
            self.rnn = nnx.Bidirectional(nnx.RNN(cell()), nnx.RNN(cell()))
        else:
            self.rnn = nnx.RNN(cell())
        width = hidden * (2 if bidirectional else 1)
        self.head = dense(time * width, num_classes, ("mlp", "vocab"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jnp.ndarray, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jnp.ndarray:
        h = self.rnn(x[..., None] if x.ndim == 2 else x)  # [batch, time, width]
        return self.head(h.reshape(h.shape[0], -1)).astype(jnp.float32)
