"""Multilayer perceptron with ReLU (MNIST-1D paper: two hidden layers of 100)."""

import math

import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.remat import remat as remat_fn
from jaxdl.models._common import dense


class Block(nnx.Module):
    def __init__(self, din: int, dout: int, dropout: float, *, dtype: str, param_dtype: str, rngs: nnx.Rngs):
        self.linear = dense(din, dout, ("embed", "mlp"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)

    def __call__(self, x, train: bool, rngs: nnx.Rngs | None):
        return self.dropout(nnx.relu(self.linear(x)), deterministic=not train, rngs=rngs)


class Model(nnx.Module):
    """[batch, *input_shape] -> logits [batch, num_classes] (float32)."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        hidden: tuple[int, ...] = (100, 100),
        dropout: float = 0.0,
        dtype: str = "float32",
        param_dtype: str = "float32",
        remat: str = "none",
        rngs: nnx.Rngs,
    ):
        sizes = (math.prod(input_shape), *hidden)
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.blocks = nnx.List([Block(a, b, dropout, **kw) for a, b in zip(sizes[:-1], sizes[1:], strict=True)])
        self.head = dense(sizes[-1], num_classes, ("mlp", "vocab"), **kw)
        self.remat = remat

    def __call__(self, x: jnp.ndarray, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jnp.ndarray:
        h = x.reshape(x.shape[0], -1)
        block = remat_fn(lambda blk, h, r: blk(h, train, r), self.remat)
        for blk in self.blocks:
            h = block(blk, h, rngs)
        return self.head(h).astype(jnp.float32)
