"""Multi-head self-attention with logical axes (heads shard under TP); the attention op itself is
`kernels.attention.api.attention`, picked by `attention_impl` (xla | cudnn | pallas | triton | auto)."""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models._common import to_dtype
from jaxdl.parallel.rules import constrain
from kernels.attention import api as attention_api


class SelfAttention(nnx.Module):
    """[batch, length, embed] -> [batch, length, embed]; q/k/v kernels [embed, heads, head_dim]."""

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        causal: bool = False,
        attention_impl: str = "xla",
        dtype: str,
        param_dtype: str,
        rngs: nnx.Rngs,
    ):
        if dim % heads:
            raise ValueError(f"attention: embed dim {dim} is not divisible by heads={heads}")
        if attention_impl not in attention_api.IMPLS:
            raise ValueError(f"config.model.attention_impl={attention_impl!r}: choose one of {attention_api.IMPLS}")
        self.heads, self.head_dim, self.causal, self.impl = heads, dim // heads, causal, attention_impl
        self.dtype = to_dtype(dtype)
        init = nnx.initializers.lecun_normal(in_axis=0, out_axis=(1, 2))
        pdt = to_dtype(param_dtype)
        shape = (dim, heads, self.head_dim)
        qkv_init = nnx.with_partitioning(init, ("embed", "heads", "kv"))
        self.wq = nnx.Param(qkv_init(rngs.params(), shape, pdt))
        self.wk = nnx.Param(qkv_init(rngs.params(), shape, pdt))
        self.wv = nnx.Param(qkv_init(rngs.params(), shape, pdt))
        out_init = nnx.with_partitioning(
            nnx.initializers.lecun_normal(in_axis=(0, 1), out_axis=2), ("heads", "kv", "embed")
        )
        self.wo = nnx.Param(out_init(rngs.params(), (heads, self.head_dim, dim), pdt))

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(self.dtype)
        proj = lambda w: constrain(
            jnp.einsum("bld,dhk->blhk", x, w[...].astype(self.dtype)), ("batch", "length", "heads", "kv")
        )
        q, k, v = proj(self.wq), proj(self.wk), proj(self.wv)
        out = attention_api.attention(q, k, v, causal=self.causal, impl=self.impl)
        return jnp.einsum("blhk,hkd->bld", out, self.wo[...].astype(self.dtype))
