"""FlashAttention-2-style fused attention in Triton: the JAX-facing launches and the `jax.custom_vjp` over the
forward, delta, dK/dV and dQ kernels of `kernels.attention.triton_kernels`, through `kernels.triton_call`
(jax-triton on a GPU, Triton's interpreter elsewhere; jax-triton has no autodiff, hence the custom VJP).

Semantics are `kernels.attention.reference`'s: `[batch, seq, heads, head_dim]`, GQA/MQA, bottom-right causal when
Sq != Skv, sliding window, q/kv segment ids, fully masked rows -> zeros and zero gradients. Head dims up to 256
(zero-padded here to a power of two >= 16, exact); any sequence lengths; `seq * heads * head_dim < 2**31` (32-bit
offsets, checked). float32 runs exact ("ieee") dots, bf16/fp16 the tensor cores. Composes with jit, grad and
checkpoint, not vmap. Launch configurations: `kernels.attention.launch_config`. Algorithm: `kernels/README.md`.
"""

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import triton

from kernels.attention.launch_config import LaunchConfig, resolve_config
from kernels.attention.reference import Window, validate
from kernels.attention.triton_kernels import _delta_kernel, _dkv_kernel, _dq_kernel, _fwd_kernel
from kernels.triton_call import triton_call

__all__ = ["attention"]

SUPPORTED_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Static description of one call (hashable: the custom_vjp's nondiff argument)."""

    causal: bool
    left: int  # -1: unbounded
    right: int  # -1: unbounded (ignored under causal)
    scale: float
    config: LaunchConfig
    backend: str

    def meta(self, q, k, has_seg: bool) -> dict[str, Any]:
        return dict(
            HQ=q.shape[2],
            HKV=k.shape[2],
            D=q.shape[3],
            CAUSAL=self.causal,
            LEFT=self.left,
            RIGHT=self.right,
            HAS_SEG=has_seg,
            PRECISION="ieee" if q.dtype == jnp.float32 else "tf32",  # 16-bit inputs: ignored by tl.dot
        )


def _seg_args(q_seg, kv_seg):
    if q_seg is None:
        dummy = jnp.zeros((1,), jnp.int32)  # never read (HAS_SEG=False): jax-triton still needs a pointer
        return dummy, dummy, False
    return q_seg.astype(jnp.int32), kv_seg.astype(jnp.int32), True


def _forward(q, k, v, q_seg, kv_seg, spec: _Spec):
    """(O [B, Sq, Hq, D] in q.dtype, LSE [B, Hq, Sq] float32)."""
    batch, q_len, q_heads, _ = q.shape
    kv_len = k.shape[1]
    qs, ks, has_seg = _seg_args(q_seg, kv_seg)
    c = spec.config.fwd
    return triton_call(
        q,
        k,
        v,
        qs,
        ks,
        spec.scale * 1.4426950408889634,
        q_len,
        kv_len,
        kernel=_fwd_kernel,
        out_shape=[
            jax.ShapeDtypeStruct(q.shape, q.dtype),
            jax.ShapeDtypeStruct((batch, q_heads, q_len), jnp.float32),
        ],
        grid=(triton.cdiv(q_len, c.block_m), batch * q_heads),
        num_warps=c.num_warps,
        num_stages=c.num_stages,
        backend=spec.backend,
        name="flash_attention_fwd",
        BLOCK_M=c.block_m,
        BLOCK_N=c.block_n,
        **spec.meta(q, k, has_seg),
    )


def _delta(o, do, spec: _Spec):
    """rowsum(dO * O) as float32 [B, Hq, Sq]."""
    batch, q_len, q_heads, head_dim = o.shape
    block = spec.config.bwd_dq.block_m
    return triton_call(
        o,
        do,
        q_len,
        kernel=_delta_kernel,
        out_shape=jax.ShapeDtypeStruct((batch, q_heads, q_len), jnp.float32),
        grid=(triton.cdiv(q_len, block), batch * q_heads),
        num_warps=4,
        num_stages=1,
        backend=spec.backend,
        name="flash_attention_delta",
        HQ=q_heads,
        D=head_dim,
        BLOCK_M=block,
    )


def _backward_dkv(q, k, v, do, lse, delta, q_seg, kv_seg, spec: _Spec):
    batch, kv_len, kv_heads, _ = k.shape
    qs, ks, has_seg = _seg_args(q_seg, kv_seg)
    c = spec.config.bwd_dkv
    return triton_call(
        q,
        k,
        v,
        do,
        lse,
        delta,
        qs,
        ks,
        spec.scale,
        spec.scale * 1.4426950408889634,
        q.shape[1],
        kv_len,
        kernel=_dkv_kernel,
        out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
        grid=(triton.cdiv(kv_len, c.block_n), batch * kv_heads),
        num_warps=c.num_warps,
        num_stages=c.num_stages,
        backend=spec.backend,
        name="flash_attention_dkv",
        BLOCK_M=c.block_m,
        BLOCK_N=c.block_n,
        **spec.meta(q, k, has_seg),
    )


def _backward_dq(q, k, v, do, lse, delta, q_seg, kv_seg, spec: _Spec):
    batch, q_len, q_heads, _ = q.shape
    qs, ks, has_seg = _seg_args(q_seg, kv_seg)
    c = spec.config.bwd_dq
    return triton_call(
        q,
        k,
        v,
        do,
        lse,
        delta,
        qs,
        ks,
        spec.scale,
        spec.scale * 1.4426950408889634,
        q_len,
        k.shape[1],
        kernel=_dq_kernel,
        out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
        grid=(triton.cdiv(q_len, c.block_m), batch * q_heads),
        num_warps=c.num_warps,
        num_stages=c.num_stages,
        backend=spec.backend,
        name="flash_attention_dq",
        BLOCK_M=c.block_m,
        BLOCK_N=c.block_n,
        **spec.meta(q, k, has_seg),
    )


def _backward(q, k, v, q_seg, kv_seg, o, lse, do, spec: _Spec):
    do = do.astype(q.dtype)
    delta = _delta(o, do, spec)
    dk, dv = _backward_dkv(q, k, v, do, lse, delta, q_seg, kv_seg, spec)
    dq = _backward_dq(q, k, v, do, lse, delta, q_seg, kv_seg, spec)
    return dq, dk, dv


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _flash(q, k, v, q_seg, kv_seg, spec: _Spec):
    return _forward(q, k, v, q_seg, kv_seg, spec)[0]


def _flash_fwd(q, k, v, q_seg, kv_seg, spec: _Spec):
    o, lse = _forward(q, k, v, q_seg, kv_seg, spec)
    return o, (q, k, v, q_seg, kv_seg, o, lse)


def _flash_bwd(spec: _Spec, res, do):
    q, k, v, q_seg, kv_seg, o, lse = res
    dq, dk, dv = _backward(q, k, v, q_seg, kv_seg, o, lse, do, spec)
    return dq, dk, dv, None, None  # segment ids: integer, non-differentiable


_flash.defvjp(_flash_fwd, _flash_bwd)


# ===============================================================================================================
# Public API
# ===============================================================================================================


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    causal: bool = False,
    q_segment_ids: jax.Array | None = None,
    kv_segment_ids: jax.Array | None = None,
    window: Window = None,
    scale: float | None = None,
    config: LaunchConfig | Mapping[str, Any] | None = None,
    backend: str = "auto",
) -> jax.Array:
    """Fused attention in Triton, differentiable in q, k, v (custom VJP with FlashAttention-2 backward kernels).

    Args:
      q: [batch, q_len, q_heads, head_dim]; float32, bfloat16 or float16.
      k, v: [batch, kv_len, kv_heads, head_dim], q's dtype, q_heads % kv_heads == 0 (GQA/MQA).
      causal: key j visible to query i iff j <= i + kv_len - q_len (bottom-right aligned).
      q_segment_ids, kv_segment_ids: int [batch, q_len] / [batch, kv_len], given together; a query sees only keys
        with its id. Not differentiable.
      window: (left, right) sliding window, either side None = unbounded (see `reference.attention`).
      scale: score scale, default 1/sqrt(head_dim).
      config: launch configuration: None = `autotune.json` for this device and shape class; a LaunchConfig; or a
        mapping like `{"fwd": {"BLOCK_M": 64}, "bwd_dq": {...}}` overriding the table entry's fields.
      backend: "auto" (jax-triton on a GPU, Triton's interpreter otherwise), "gpu" or "interpret".

    Returns:
      [batch, q_len, q_heads, head_dim] in q.dtype; rows that see no key are zeros (and get zero gradients).
    """
    window, scale = validate(q, k, v, q_segment_ids, kv_segment_ids, window, scale)
    if backend not in ("auto", "gpu", "interpret"):
        raise ValueError(f"backend: expected 'auto', 'gpu' or 'interpret', got {backend!r}")
    if q.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"q: the Triton kernels support float32, bfloat16 and float16, got {q.dtype}")
    batch, q_len, q_heads, head_dim = q.shape
    kv_len = k.shape[1]
    if head_dim > 256:
        raise ValueError(f"q: the Triton kernels support head_dim <= 256, got {head_dim}")
    head_dim_pad = max(16, triton.next_power_of_2(head_dim))
    for name, length, heads in (("q", q_len, q_heads), ("k", kv_len, k.shape[2])):
        if length * heads * head_dim_pad >= 2**31:  # offsets inside one sequence are 32-bit in the kernels
            raise ValueError(
                f"{name}: seq * heads * head_dim must be < 2**31 for the Triton kernels, got {length} * {heads} * "
                f"{head_dim_pad}"
            )
    launch = resolve_config(
        config, head_dim=head_dim_pad, causal=causal, dtype=q.dtype, q_len=q_len, kv_len=kv_len, backend=backend
    )
    left = -1 if window is None or window[0] is None else window[0]
    right = -1 if window is None or window[1] is None else window[1]
    spec = _Spec(causal=bool(causal), left=left, right=right, scale=scale, config=launch, backend=backend)
    if head_dim_pad != head_dim:  # zero columns add nothing to q.k and give zero output columns
        pad = [(0, 0)] * 3 + [(0, head_dim_pad - head_dim)]
        q, k, v = (jnp.pad(x, pad) for x in (q, k, v))
    out = _flash(q, k, v, q_segment_ids, kv_segment_ids, spec)
    return out[..., :head_dim] if head_dim_pad != head_dim else out
