"""The one public attention op: `attention(q, k, v, ..., impl=...)` over `[batch, seq, heads, head_dim]`.

impl:
  `xla`     kernels.attention.reference (plain jnp compiled by XLA; every option; any platform).
  `cudnn`   `jax.nn.dot_product_attention(implementation="cudnn")` (GPU; bf16/fp16; head_dim <= 128; no segment
            ids; causal only with Sq == Skv, whose alignment then agrees with ours). Unsupported options raise.
  `pallas`  kernels.attention.pallas (FlashAttention-2 in Pallas; interpret mode on CPU, slow but exact).
  `triton`  kernels.attention.triton (Triton kernels: jax-triton on GPU, Triton's interpreter on CPU).
  `auto`    GPU: triton when jax-triton is installed, else cudnn when it supports the call, else xla.
            CPU/TPU: xla (the interpreters are for tests). Every fallback is logged once with its reason.

An explicitly requested implementation never silently computes something else: options it cannot honour raise a
ValueError naming the option. Bad shapes/dtypes raise errors naming the argument (shared validation with the
reference), before anything is traced.
"""

from __future__ import annotations

import functools
import importlib.util
import logging

import jax
import jax.numpy as jnp

from kernels.attention import reference

log = logging.getLogger(__name__)
IMPLS = ("auto", "xla", "cudnn", "pallas", "triton")


@functools.cache
def _log_once(message: str) -> None:
    log.info(message)


def _has_jax_triton() -> bool:
    return importlib.util.find_spec("jax_triton") is not None and importlib.util.find_spec("triton") is not None


def cudnn_unsupported(q, k, *, causal: bool, segments: bool, window) -> str | None:
    """Why `jax.nn.dot_product_attention(implementation="cudnn")` cannot compute this call exactly (None if it can)."""
    if jax.default_backend() != "gpu":
        return f"cudnn needs a GPU (backend is {jax.default_backend()})"
    if q.dtype not in (jnp.bfloat16, jnp.float16):
        return f"cudnn needs bf16/fp16 inputs (q is {q.dtype})"
    if q.shape[-1] > 128:
        return f"cudnn flash attention supports head_dim <= 128 (got {q.shape[-1]})"
    if segments:
        return "cudnn path has no segment ids"
    if causal and q.shape[1] != k.shape[1]:
        return "causal with Sq != Skv: our bottom-right alignment is not jax's"
    if window is not None and (window[0] is None or window[1] is None):
        return "cudnn needs a bounded (left, right) window"
    return None


def choose(impl: str, q, k, *, causal: bool, segments: bool, window) -> tuple[str, str | None]:
    """(implementation to run, reason when `auto` fell back from the fastest candidate)."""
    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r}: choose one of {IMPLS}")
    if impl != "auto":
        return impl, None
    if jax.default_backend() != "gpu":
        return "xla", f"auto on {jax.default_backend()}: xla (pallas/triton run interpreted here, for tests only)"
    if _has_jax_triton():
        return "triton", None
    why_not = cudnn_unsupported(q, k, causal=causal, segments=segments, window=window)
    if why_not is None:
        return "cudnn", "auto on gpu: jax-triton is not installed (pip install '.[gpu]'), using cudnn"
    return "xla", f"auto on gpu: jax-triton is not installed and {why_not}; using xla"


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    causal: bool = False,
    q_segment_ids: jax.Array | None = None,
    kv_segment_ids: jax.Array | None = None,
    window=None,
    scale: float | None = None,
    impl: str = "auto",
) -> jax.Array:
    """softmax(q kᵀ · scale + mask) v. q [B, Sq, Hq, D]; k, v [B, Skv, Hkv, D] (Hq % Hkv == 0) -> [B, Sq, Hq, D].

    Semantics (masks, bottom-right alignment when Sq != Skv, fully masked rows -> 0): kernels.attention.reference.
    """
    window, scale = reference.validate(q, k, v, q_segment_ids, kv_segment_ids, window, scale)
    segments = q_segment_ids is not None
    name, reason = choose(impl, q, k, causal=causal, segments=segments, window=window)
    if reason:
        _log_once(reason)
    kw = dict(causal=causal, q_segment_ids=q_segment_ids, kv_segment_ids=kv_segment_ids, window=window, scale=scale)
    if name == "xla":
        return reference.attention(q, k, v, **kw)
    if name == "pallas":
        from kernels.attention import pallas

        return pallas.attention(q, k, v, **kw)
    if name == "triton":
        from kernels.attention import triton as triton_attention

        return triton_attention.attention(q, k, v, **kw)
    why_not = cudnn_unsupported(q, k, causal=causal, segments=segments, window=window)
    if why_not:
        raise ValueError(f"impl='cudnn' cannot compute this call: {why_not}")
    return jax.nn.dot_product_attention(
        q, k, v, scale=scale, is_causal=causal, local_window_size=window, implementation="cudnn"
    )
