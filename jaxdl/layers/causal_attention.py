"""Causal multi-head self-attention for decoders: grouped-query heads (GQA/MQA), optional RoPE, and a KV-cache path.

Two ways to run the same weights:

- `__call__(x, positions)`: the whole sequence at once (training, scoring), through
  `kernels.attention.api.attention(..., causal=True, impl=attention_impl)`, so the config picks the kernel.
- `cached(x, positions, index, k_cache, v_cache)`: `t` new tokens at slots `index .. index+t-1` of a preallocated
  cache `[batch, max_len, kv_heads, head_dim]` (prefill: `t` = prompt length; decoding: `t` = 1). Their keys and
  values are written into the cache, and query `i` attends to slots `j <= index + i`, which also masks every
  unfilled slot. The kernel API's masks (bottom-right causal alignment, segment ids, windows) cannot express
  "slot j is visible to the query at absolute position p iff j <= p" on a partly filled cache, so this path uses
  the small masked softmax below (float32 scores, like `kernels.attention.reference`).
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.rope import apply_rope
from jaxdl.models._common import to_dtype
from jaxdl.parallel.rules import constrain
from kernels.attention import api as attention_api


def masked_attention(q: jax.Array, k: jax.Array, v: jax.Array, q_pos: jax.Array) -> jax.Array:
    """q [B, t, Hq, D] at absolute positions q_pos [t]; k, v [B, S, Hkv, D] (slot j = position j) -> [B, t, Hq, D].

    Query i sees slot j iff j <= q_pos[i]; GQA: query head h reads kv head h // (Hq // Hkv)."""
    batch, t, q_heads, head_dim = q.shape
    kv_heads = k.shape[2]
    group = q_heads // kv_heads
    hi = jax.lax.Precision.HIGHEST
    qf = q.astype(jnp.float32).reshape(batch, t, kv_heads, group, head_dim) / math.sqrt(head_dim)
    s = jnp.einsum("bqhgd,bkhd->bhgqk", qf, k.astype(jnp.float32), precision=hi)
    visible = jnp.arange(k.shape[1])[None, :] <= q_pos[:, None]  # [t, S]
    p = jax.nn.softmax(jnp.where(visible, s, -jnp.inf), axis=-1)
    out = jnp.einsum("bhgqk,bkhd->bqhgd", p, v.astype(jnp.float32), precision=hi)
    return out.reshape(batch, t, q_heads, head_dim).astype(q.dtype)


class CausalSelfAttention(nnx.Module):
    """[batch, seq, embed] -> [batch, seq, embed]; wq [embed, heads, kv], wk/wv [embed, kv_heads, kv] (GQA when
    kv_heads < heads), wo [heads, kv, embed]; with `use_bias` also bq [heads, kv], bk/bv [kv_heads, kv], bo [embed]
    (zero init; GPT-2 has them). RoPE (when `rope`) rotates q and k by their absolute positions."""

    def __init__(
        self,
        dim: int,
        heads: int,
        kv_heads: int | None = None,
        *,
        rope: bool = True,
        rope_base: float = 10000.0,
        attention_impl: str = "xla",
        use_bias: bool = False,
        dtype: str,
        param_dtype: str,
        rngs: nnx.Rngs,
    ):
        kv_heads = heads if kv_heads in (None, 0) else kv_heads
        if dim % heads:
            raise ValueError(f"config.model.heads={heads} does not divide the embed dim {dim}")
        if heads % kv_heads:
            raise ValueError(f"config.model.num_kv_heads={kv_heads} must divide config.model.heads={heads}")
        if attention_impl not in attention_api.IMPLS:
            raise ValueError(f"config.model.attention_impl={attention_impl!r}: choose one of {attention_api.IMPLS}")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        if rope and self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head dim; dim {dim} / heads {heads} = {self.head_dim}")
        self.rope, self.rope_base, self.impl, self.dtype = rope, rope_base, attention_impl, to_dtype(dtype)
        pdt = to_dtype(param_dtype)
        init = nnx.with_partitioning(
            nnx.initializers.lecun_normal(in_axis=0, out_axis=(1, 2)), ("embed", "heads", "kv")
        )
        self.wq = nnx.Param(init(rngs.params(), (dim, heads, self.head_dim), pdt))
        self.wk = nnx.Param(init(rngs.params(), (dim, kv_heads, self.head_dim), pdt))
        self.wv = nnx.Param(init(rngs.params(), (dim, kv_heads, self.head_dim), pdt))
        out_init = nnx.initializers.lecun_normal(in_axis=(0, 1), out_axis=2)
        out_init = nnx.with_partitioning(out_init, ("heads", "kv", "embed"))
        self.wo = nnx.Param(out_init(rngs.params(), (heads, self.head_dim, dim), pdt))
        self.use_bias = use_bias
        if use_bias:
            # zeros need no randomness: a fixed key, so turning biases on leaves the other initial values unchanged
            zeros = lambda names, shape: nnx.Param(
                nnx.with_partitioning(nnx.initializers.zeros, names)(jax.random.key(0), shape, pdt)
            )
            self.bq = zeros(("heads", "kv"), (heads, self.head_dim))
            self.bk = zeros(("heads", "kv"), (kv_heads, self.head_dim))
            self.bv = zeros(("heads", "kv"), (kv_heads, self.head_dim))
            self.bo = zeros(("embed",), (dim,))

    def _qkv(self, x: jax.Array, positions: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        x = x.astype(self.dtype)

        def proj(w, b):
            y = jnp.einsum("bld,dhk->blhk", x, w[...].astype(self.dtype))
            y = y + b[...].astype(self.dtype) if self.use_bias else y
            return constrain(y, ("batch", "length", "heads", "kv"))

        bq, bk, bv = (self.bq, self.bk, self.bv) if self.use_bias else (None, None, None)
        q, k, v = proj(self.wq, bq), proj(self.wk, bk), proj(self.wv, bv)
        if self.rope:
            q, k = apply_rope(q, positions, self.rope_base), apply_rope(k, positions, self.rope_base)
        return q, k, v

    def _out(self, o: jax.Array) -> jax.Array:
        y = jnp.einsum("blhk,hkd->bld", o, self.wo[...].astype(self.dtype))
        return y + self.bo[...].astype(self.dtype) if self.use_bias else y

    def __call__(self, x: jax.Array, positions: jax.Array) -> jax.Array:
        """x [batch, seq, embed] at positions [seq] (0..seq-1 for a fresh sequence)."""
        q, k, v = self._qkv(x, positions)
        return self._out(attention_api.attention(q, k, v, causal=True, impl=self.impl))

    def cached(
        self, x: jax.Array, positions: jax.Array, index: jax.Array, k_cache: jax.Array, v_cache: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """x [batch, t, embed] at positions [t] = index + arange(t); caches [batch, max_len, kv_heads, head_dim]
        -> (out [batch, t, embed], k_cache, v_cache) with the t new keys/values written at slot `index`."""
        q, k, v = self._qkv(x, positions)
        start = (0, index, 0, 0)
        k_cache = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), start)
        v_cache = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), start)
        o = masked_attention(q, k_cache.astype(q.dtype), v_cache.astype(q.dtype), positions)
        return self._out(o), k_cache, v_cache
