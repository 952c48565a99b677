"""Transformer feed-forward block with logical axes: embed -> mlp -> embed (column- then row-parallel under TP)."""

import jax
from flax import nnx

from jaxdl.layers.dtypes import to_dtype
from jaxdl.parallel.rules import constrain


class Mlp(nnx.Module):
    """[batch, length, embed] -> [batch, length, embed]; GELU between two dense layers."""

    def __init__(self, dim: int, hidden: int, *, dropout: float = 0.0, dtype: str, param_dtype: str, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal()
        kw = dict(dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
        self.up = nnx.Linear(dim, hidden, kernel_init=nnx.with_partitioning(init, ("embed", "mlp")),
                             bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("mlp",)), **kw)  # fmt: skip
        self.down = nnx.Linear(hidden, dim, kernel_init=nnx.with_partitioning(init, ("mlp", "embed")),
                               bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("embed",)), **kw)  # fmt: skip
        self.dropout = nnx.Dropout(dropout)

    def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None) -> jax.Array:
        h = constrain(nnx.gelu(self.up(x)), ("batch", "length", "mlp"))
        return self.dropout(self.down(h), deterministic=not train, rngs=rngs)
