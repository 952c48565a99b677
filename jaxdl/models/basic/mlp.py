"""Multilayer perceptron with ReLU (MNIST-1D paper: two hidden layers of 100; the paper's code adds the second
hidden layer's output to its input, `h = h + relu(linear2(h))`: `residual=True`)."""

import math

import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.dense import dense
from jaxdl.layers.remat import remat as remat_fn
from jaxdl.models.basic import _torch_init


class Block(nnx.Module):
    def __init__(
        self, din: int, dout: int, dropout: float, *, dtype: str, param_dtype: str, init: str = "flax", rngs: nnx.Rngs
    ):
        make = _torch_init.dense if init == "torch" else dense
        self.linear = make(din, dout, ("embed", "mlp"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
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
        residual: bool = False,
        init: str = "flax",
        rngs: nnx.Rngs,
    ):
        """residual: every hidden layer after the first whose width equals its input's adds its input
        (`h = h + block(h)`; the MNIST-1D paper's MLPBase). init: "flax" (LeCun-normal kernels, zero biases) or
        "torch" (torch.nn.Linear's U(+-1/sqrt(fan_in)) weights and biases)."""
        _torch_init.check(init, "mlp")
        sizes = (math.prod(input_shape), *hidden)
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.blocks = nnx.List(
            [Block(a, b, dropout, init=init, **kw) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )
        self.head = (_torch_init.dense if init == "torch" else dense)(sizes[-1], num_classes, ("mlp", "vocab"), **kw)
        self.remat = remat
        pairs = enumerate(zip(sizes[:-1], sizes[1:], strict=True))
        self.skip = tuple(residual and i > 0 and a == b for i, (a, b) in pairs)

    def __call__(self, x: jnp.ndarray, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jnp.ndarray:
        h = x.reshape(x.shape[0], -1)
        block = remat_fn(lambda blk, h, r: blk(h, train, r), self.remat)
        for blk, skip in zip(self.blocks, self.skip, strict=True):
            h = h + block(blk, h, rngs) if skip else block(blk, h, rngs)
        return self.head(h).astype(jnp.float32)
