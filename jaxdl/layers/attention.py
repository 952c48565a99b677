"""Multi-head attention, the one module every model uses (GPT, BERT, the seq2seq encoder/decoder, the scanned
transformer and ViT): self- or cross-attention, GQA/MQA, RoPE, causal/windowed/padding masks, a KV cache.

Layout `[batch, seq, heads, head_dim]`. Projections: wq [embed, heads, head_dim], wk/wv [embed, kv_heads,
head_dim] (kv_heads < heads: grouped-query attention, 1: multi-query), wo [heads, head_dim, embed], each with the
logical axes ("embed", "heads", "kv") / ("heads", "kv", "embed") that the sharding rules split (heads over
`tensor`: Megatron column- then row-parallel); with `use_bias` also bq [heads, head_dim], bk/bv [kv_heads,
head_dim] (axes ("heads", "kv")) and bo [embed] (("embed",)), all zero-initialized (BERT and GPT-2 have them).

The attention op is `kernels.attention.api.attention(..., impl=attention_impl)`, so the config picks the kernel
(xla | cudnn | pallas | triton | auto). Masks are what that op expresses: `causal` (bottom-right aligned when
Sq != Skv), a sliding `window=(left, right)`, and segment ids (packed sequences, or padding: `key_mask` [batch,
Lk] is turned into segment ids, real keys 1 and padded keys 0 against queries 1). Two paths cannot go through the
fused op and run the small float32 masked softmax below instead (the same math as
`kernels.attention.reference`):

- dropout on the attention probabilities while training (BERT's `attention_probs_dropout_prob`): no fused kernel
  applies dropout inside the softmax, so such a module must use attention_impl "xla" or "auto";
- `cached(...)`, decoding from a preallocated KV cache `[batch, max_len, kv_heads, head_dim]`: `t` new tokens at
  slots `index .. index+t-1` see the slots `j <= index + i`, which also masks every unfilled slot. The op's
  bottom-right alignment cannot place queries at a traced `index` of a partly filled cache.

Parameter init draws one `rngs.params()` key per kernel, in the order wq, wk, wv, wo (biases are zeros and take a
fixed key, so turning them on leaves every other initial value unchanged); `draw_bias_keys=True` draws a key for
each bias too, right after its kernel (BERT's historical stream: wq, bq, wk, bk, wv, bv, wo, bo), so seeded
models keep their initial values.
"""

import functools
import logging
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.dtypes import to_dtype
from jaxdl.layers.rope import apply_rope
from jaxdl.parallel.rules import constrain
from kernels.attention import api as attention_api
from kernels.attention import reference

log = logging.getLogger(__name__)
HEAD_AXES = ("batch", "length", "heads", "kv")  # activations [batch, seq, heads, head_dim]
UNFUSED_IMPLS = ("xla", "auto")  # impls under which the probability-dropout path may stand in for the op


@functools.cache
def _log_once(message: str) -> None:
    log.info(message)


def softmax_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    visible: jax.Array,
    *,
    dropout: Callable[[jax.Array], jax.Array] | None = None,
    return_probs: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """softmax(q kᵀ / sqrt(head_dim) where visible) v, in float32, with optional dropout on the probabilities.

    q [B, Sq, Hq, D]; k, v [B, Skv, Hkv, D] (query head h reads kv head h // (Hq // Hkv)); visible bool
    [B or 1, Sq, Skv] (True = the query sees the key); dropout maps probabilities [B, Hq, Sq, Skv] float32 to
    dropped ones. Rows that see no key output zeros, as in `kernels.attention.reference` -> [B, Sq, Hq, D] in
    q.dtype; with `return_probs` also the probabilities [B, Hq, Sq, Skv] float32 (before dropout)."""
    batch, q_len, q_heads, head_dim = q.shape
    kv_len, kv_heads = k.shape[1], k.shape[2]
    group = q_heads // kv_heads
    hi = jax.lax.Precision.HIGHEST
    qf = q.astype(jnp.float32).reshape(batch, q_len, kv_heads, group, head_dim)
    s = jnp.einsum("bqhgd,bkhd->bhgqk", qf, k.astype(jnp.float32), precision=hi) * (1.0 / math.sqrt(head_dim))
    s = jnp.where(visible[:, None, None], s, -jnp.inf)
    row_max = jax.lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True))
    p = jnp.exp(s - jnp.where(jnp.isfinite(row_max), row_max, 0.0))  # a fully masked row: exp(-inf) = 0
    denom = jnp.sum(p, axis=-1, keepdims=True)
    p = probs = p / jnp.where(denom == 0.0, 1.0, denom)
    if dropout is not None:  # on [B, Hq, Sq, Skv], the layout of the per-head probabilities
        p = dropout(p.reshape(batch, q_heads, q_len, kv_len)).reshape(p.shape)
    out = jnp.einsum("bhgqk,bkhd->bqhgd", p, v.astype(jnp.float32), precision=hi)
    out = out.reshape(batch, q_len, q_heads, head_dim).astype(q.dtype)
    return (out, probs.reshape(batch, q_heads, q_len, kv_len)) if return_probs else out


class Attention(nnx.Module):
    """Queries x [batch, Lq, embed] attend to keys/values projected from x (self-attention) or from a context
    [batch, Lk, embed] (cross-attention) -> [batch, Lq, embed] in `dtype` (see the module docstring)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        kv_heads: int | None = None,
        head_dim: int | None = None,
        causal: bool = False,
        window: tuple[int | None, int | None] | None = None,
        rope: bool = False,
        rope_base: float = 10000.0,
        use_bias: bool = False,
        dropout: float = 0.0,
        attention_impl: str = "xla",
        kernel_init: Callable[..., jax.Array] | None = None,
        draw_bias_keys: bool = False,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        """dim: embed width. head_dim: width of each head (None = dim // heads; set it to keep the heads' size
        when a model has fewer heads, e.g. after head pruning). kv_heads: key/value heads (None or 0 = heads). causal /
        window: the masks of every full-sequence call (`kernels.attention.reference` semantics). rope: rotate q
        and k by their positions (RoPE, base `rope_base`; self-attention only). dropout: rate on the attention
        probabilities in training. kernel_init: one initializer for all four kernels (None = LeCun normal over
        each kernel's fan-in: embed for q/k/v, heads x head_dim for the output)."""
        kv_heads = heads if kv_heads in (None, 0) else kv_heads
        if heads < 1 or (head_dim is None and dim % heads):
            raise ValueError(f"config.model.dim={dim} is not divisible by config.model.heads={heads}")
        if head_dim is not None and head_dim < 1:
            raise ValueError(f"config.model.head_dim={head_dim}: expected a positive width (or None = dim // heads)")
        if kv_heads < 1 or heads % kv_heads:
            raise ValueError(f"config.model.num_kv_heads={kv_heads} must divide config.model.heads={heads}")
        if attention_impl not in attention_api.IMPLS:
            raise ValueError(f"config.model.attention_impl={attention_impl!r}: choose one of {attention_api.IMPLS}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"attention dropout={dropout}: expected a rate in [0, 1) (config.model.attention_dropout)")
        if dropout > 0 and attention_impl not in UNFUSED_IMPLS:
            raise ValueError(
                f"config.model.attention_impl={attention_impl!r} with attention dropout {dropout}: no fused kernel "
                f"drops attention probabilities; use attention_impl in {UNFUSED_IMPLS} or attention_dropout=0"
            )
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim or dim // heads
        if rope and self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head dim; dim {dim} / heads {heads} = {self.head_dim}")
        self.causal, self.window = causal, reference.normalize_window(window)
        self.rope, self.rope_base, self.impl, self.use_bias = rope, rope_base, attention_impl, use_bias
        self.dtype, pdt = to_dtype(dtype), to_dtype(param_dtype)
        self.dropout = nnx.Dropout(dropout)

        def kernel(shape, names, in_axis, out_axis):
            init = kernel_init or nnx.initializers.lecun_normal(in_axis=in_axis, out_axis=out_axis)
            return nnx.Param(nnx.with_partitioning(init, names)(rngs.params(), shape, pdt))

        def bias(shape, names):
            key = rngs.params() if draw_bias_keys else jax.random.key(0)  # zeros: the key only moves the stream
            return nnx.Param(nnx.with_partitioning(nnx.initializers.zeros, names)(key, shape, pdt))

        qkv_axes = ("embed", "heads", "kv")
        for name, n in (("q", heads), ("k", kv_heads), ("v", kv_heads)):
            setattr(self, f"w{name}", kernel((dim, n, self.head_dim), qkv_axes, 0, (1, 2)))
            if use_bias:
                setattr(self, f"b{name}", bias((n, self.head_dim), ("heads", "kv")))
        self.wo = kernel((heads, self.head_dim, dim), ("heads", "kv", "embed"), (0, 1), 2)
        if use_bias:
            self.bo = bias((dim,), ("embed",))

    # ------------------------------------------------------------------------------------------ projections
    def _proj(self, x: jax.Array, name: str) -> jax.Array:
        """x [batch, L, embed] -> [batch, L, heads of w{name}, head_dim] (+ bias) in the compute dtype."""
        y = jnp.einsum("bld,dhk->blhk", x.astype(self.dtype), getattr(self, f"w{name}")[...].astype(self.dtype))
        if self.use_bias:
            y = y + getattr(self, f"b{name}")[...].astype(self.dtype)
        return constrain(y, HEAD_AXES)

    def _rotate(self, y: jax.Array, positions: jax.Array | None) -> jax.Array:
        if not self.rope:
            return y
        if positions is None:
            positions = jnp.arange(y.shape[1], dtype=jnp.int32)
        return apply_rope(y, positions, self.rope_base)

    def project_q(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """x [batch, Lq, embed] -> queries [batch, Lq, heads, head_dim] (RoPE at `positions`, default 0..Lq-1)."""
        return self._rotate(self._proj(x, "q"), positions)

    def project_kv(self, context: jax.Array, positions: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """context [batch, Lk, embed] -> keys, values [batch, Lk, kv_heads, head_dim] (keys RoPE-rotated at
        `positions` when rope). Cross-attention computes these once per source (e.g. into a decoding cache)."""
        return self._rotate(self._proj(context, "k"), positions), self._proj(context, "v")

    def _out(self, o: jax.Array) -> jax.Array:
        """[batch, L, heads, head_dim] -> [batch, L, embed]."""
        y = jnp.einsum("blhk,hkd->bld", o, self.wo[...].astype(self.dtype))
        return y + self.bo[...].astype(self.dtype) if self.use_bias else y

    # -------------------------------------------------------------------------------------------- forward
    def __call__(
        self,
        x: jax.Array,
        context: jax.Array | None = None,
        *,
        kv: tuple[jax.Array, jax.Array] | None = None,
        positions: jax.Array | None = None,
        key_mask: jax.Array | None = None,
        q_segment_ids: jax.Array | None = None,
        kv_segment_ids: jax.Array | None = None,
        train: bool = False,
        rngs: nnx.Rngs | None = None,
        impl: str | None = None,
        return_probs: bool = False,
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """x [batch, Lq, embed] -> [batch, Lq, embed]; with `return_probs`, (that, the attention probabilities
        [batch, heads, Lq, Lk] float32) from the unfused float32 softmax below (fused kernels never materialize
        them): for explanations (attention rollout, `jaxdl.explain.rollout`), not for training at scale.

        Keys/values: from x (self-attention), from `context` [batch, Lk, embed], or precomputed `kv` (a
        `project_kv` result). positions: int [Lq] or [batch, Lq] for RoPE (default 0..Lq-1). Masks besides the
        module's causal/window: `key_mask` bool [batch, Lk] (True = real key, False = padding), or int segment ids
        `q_segment_ids` [batch, Lq] with `kv_segment_ids` [batch, Lk] (a query sees keys of its own id). train /
        rngs: attention-probability dropout (the `dropout` stream). impl: overrides attention_impl for this call."""
        if context is not None and kv is not None:
            raise ValueError("attention: pass context or kv (precomputed keys/values), not both")
        if self.rope and (context is not None or kv is not None):
            raise ValueError("attention: rope applies to self-attention only (got a context or kv)")
        if key_mask is not None:
            if q_segment_ids is not None or kv_segment_ids is not None:
                raise ValueError("attention: pass key_mask or segment ids, not both")
            if key_mask.ndim != 2:
                raise ValueError(f"key_mask: expected bool [batch, Lk], got shape {tuple(key_mask.shape)}")
            q_segment_ids = jnp.ones(x.shape[:2], jnp.int32)
            kv_segment_ids = key_mask.astype(jnp.int32)
        q = self.project_q(x, positions)
        k, v = kv if kv is not None else self.project_kv(x if context is None else context, positions)
        drop_probs = train and self.dropout.rate > 0
        if drop_probs or return_probs:
            reference.validate(q, k, v, q_segment_ids, kv_segment_ids, self.window)  # the op's errors, same words
            drop = None
            if drop_probs:
                if rngs is None:
                    raise ValueError(
                        "attention: train=True with attention dropout > 0 needs rngs (nnx.Rngs(dropout=key))"
                    )
                if (impl or self.impl) not in UNFUSED_IMPLS:
                    raise ValueError(f"impl={impl!r}: training with attention dropout needs one of {UNFUSED_IMPLS}")
                if (impl or self.impl) == "auto":
                    _log_once("attention_impl='auto' with attention dropout in training: the unfused float32 softmax")
                drop = lambda p: self.dropout(p, deterministic=False, rngs=rngs)
            visible = reference.mask(
                q.shape[1],
                k.shape[1],
                causal=self.causal,
                window=self.window,
                q_segment_ids=q_segment_ids,
                kv_segment_ids=kv_segment_ids,
            )
            o, probs = softmax_attention(q, k, v, visible, dropout=drop, return_probs=True)
            return (self._out(o), probs) if return_probs else self._out(o)
        o = attention_api.attention(
            q,
            k,
            v,
            causal=self.causal,
            window=self.window,
            q_segment_ids=q_segment_ids,
            kv_segment_ids=kv_segment_ids,
            impl=impl or self.impl,
        )
        return self._out(o)

    def cached(
        self, x: jax.Array, positions: jax.Array, index: jax.Array, k_cache: jax.Array, v_cache: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Causal self-attention of t new tokens against a KV cache (no dropout).

        x [batch, t, embed] at positions [t] = index + arange(t); k_cache, v_cache [batch, max_len, kv_heads,
        head_dim] -> (out [batch, t, embed], k_cache, v_cache) with the t new keys/values written at slot `index`
        (the caller keeps index + t <= max_len). Query i sees slot j iff j <= index + i (and j >= index + i - left
        under a window)."""
        if not self.causal:
            raise ValueError("attention: the KV-cache path needs a causal module (causal=True)")
        q = self.project_q(x, positions)
        k, v = self.project_kv(x, positions)
        start = (0, index, 0, 0)
        k_cache = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), start)
        v_cache = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), start)
        slots = jnp.arange(k_cache.shape[1])[None, :]
        visible = slots <= positions[:, None]  # [t, max_len]
        if self.window is not None and self.window[0] is not None:
            visible &= slots >= positions[:, None] - self.window[0]
        o = softmax_attention(q, k_cache.astype(q.dtype), v_cache.astype(q.dtype), visible[None])
        return self._out(o), k_cache, v_cache
