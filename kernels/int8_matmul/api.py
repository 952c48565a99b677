"""The public quantized matmuls: ``w8a8_matmul``, ``w8a16_matmul``, ``w4a16_matmul`` over ``x [..., K]``.

Weights are quantized once, offline (`reference.quantize_per_channel` -> ``w_q [K, N]`` int8 + ``w_scale [1, N]``;
`reference.quantize_int4` -> ``w_packed [K // 2, N]`` uint8 + ``scales [K // group_size, N]``); activations are
float32 / bfloat16 / float16; leading dims of ``x`` are flattened into M and restored on the output.

impl: `xla` (the reference, any platform), `pallas` (interpret mode on CPU), `triton` (jax-triton on a GPU, Triton's
interpreter on CPU), `auto` (GPU: triton when jax-triton is installed, else xla; CPU/TPU: xla; the fallback and its
reason are logged once). An explicit impl never falls back; bad shapes/dtypes raise errors naming the argument.

Gradients (inference kernels; QAT uses fake quantization in jnp): ``w8a16_matmul`` and ``w4a16_matmul`` are
differentiable w.r.t. ``x`` and the scales (kernel forward, the reference's VJP backward; the integer weights get
none); ``w8a8_matmul`` raises a TypeError when differentiated (it rounds ``x`` itself). See `kernels/README.md`.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Callable

import jax
import jax.numpy as jnp

from kernels.int8_matmul import reference

__all__ = ["IMPLS", "choose", "w4a16_matmul", "w8a8_matmul", "w8a16_matmul"]

log = logging.getLogger(__name__)
IMPLS = ("auto", "xla", "pallas", "triton")


@functools.cache
def _log_once(message: str) -> None:
    log.info(message)


def _has_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


def _has_jax_triton() -> bool:
    return importlib.util.find_spec("jax_triton") is not None and _has_triton()


def choose(impl: str) -> tuple[str, str | None]:
    """(implementation to run, reason when ``auto`` did not pick a kernel)."""
    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r}: choose one of {IMPLS}")
    if impl == "triton" and not _has_triton():
        raise ImportError("impl='triton' needs the triton package (pip install -e '.[test]' or '.[gpu]')")
    if impl != "auto":
        return impl, None
    backend = jax.default_backend()
    if backend != "gpu":
        return "xla", f"auto on {backend}: xla (pallas/triton run interpreted here, for tests only)"
    if _has_jax_triton():
        return "triton", None
    return "xla", "auto on gpu: jax-triton is not installed (pip install -e '.[gpu]'), using xla"


def _resolve(impl: str) -> str:
    name, reason = choose(impl)
    if reason:
        _log_once(reason)
    return name


def _flatten(x: jax.Array) -> tuple[jax.Array, tuple[int, ...]]:
    lead = tuple(x.shape[:-1])
    return x.reshape(-1, x.shape[-1]), lead


def _kernels(name: str):
    if name == "pallas":
        from kernels.int8_matmul import pallas as mod
    else:
        from kernels.int8_matmul import triton as mod
    return mod


def _reference_grad(kernel: Callable, ref: Callable, x, w, s):
    """``kernel(x, w, s)`` forward; backward: the VJP of ``ref`` w.r.t. ``x`` and ``s`` (none for integer ``w``)."""

    @jax.custom_vjp
    def f(x, w, s):
        return kernel(x, w, s)

    def fwd(x, w, s):
        return kernel(x, w, s), (x, w, s)

    def bwd(res, g):
        x, w, s = res
        _, vjp = jax.vjp(lambda x, s: ref(x, w, s), x, s)
        dx, ds = vjp(g)
        return dx, None, ds

    f.defvjp(fwd, bwd)
    return f(x, w, s)


def _not_differentiable(fn: Callable, message: str, *args):
    """``fn(*args)``; differentiating it (jvp or grad, w.r.t. any argument) raises TypeError(message)."""

    @jax.custom_jvp
    def f(*args):
        return fn(*args)

    @f.defjvp
    def f_jvp(primals, tangents):
        raise TypeError(message)

    return f(*args)


_W8A8_NO_GRAD = (
    "w8a8_matmul is inference-only and has no gradient: it rounds x to int8 per token (derivative zero almost "
    "everywhere). For quantization-aware training use fake quantization in jnp (straight-through estimator); for "
    "a gradient w.r.t. x through int8 weights use w8a16_matmul."
)


def w8a8_matmul(x: jax.Array, w_q: jax.Array, w_scale: jax.Array, *, impl: str = "auto", out_dtype=None) -> jax.Array:
    """int8 x int8 matmul: ``x [..., K]`` float, ``w_q [K, N]`` int8, ``w_scale [1, N]`` f32 -> ``[..., N]``.

    Quantizes ``x`` per token (`reference.quantize_per_token`, in XLA), multiplies in int32 and dequantizes with
    ``x_scale * w_scale`` in float32. Returns ``out_dtype`` (default ``x.dtype``). Not differentiable (raises).
    """
    reference.check_x(x, "x")
    k = int(x.shape[-1])
    reference.check_int8_weights(k, w_q, w_scale)
    out_dtype = jnp.dtype(x.dtype if out_dtype is None else out_dtype)
    if out_dtype not in reference.ACT_DTYPES:
        raise TypeError(f"out_dtype: expected one of {[d.name for d in reference.ACT_DTYPES]}, got {out_dtype.name}")
    name = _resolve(impl)
    x2, lead = _flatten(x)

    def run(x2, w_q, w_scale):
        x_q, x_scale = reference.quantize_per_token(x2)
        if name == "xla":
            return reference.w8a8(x_q, x_scale, w_q, w_scale, out_dtype)
        return _kernels(name).w8a8(x_q, x_scale, w_q, w_scale, out_dtype)

    out = _not_differentiable(run, _W8A8_NO_GRAD, x2, w_q, w_scale)
    return out.reshape(*lead, out.shape[-1])


def w8a16_matmul(x: jax.Array, w_q: jax.Array, w_scale: jax.Array, *, impl: str = "auto") -> jax.Array:
    """Weight-only int8 matmul: ``x [..., K]`` (f32/bf16/f16), ``w_q [K, N]`` int8, ``w_scale [1, N]`` ->
    ``[..., N]`` in ``x.dtype``: ``(x @ w_q) * w_scale`` with float32 accumulation (`reference.w8a16`).

    Differentiable w.r.t. ``x`` and ``w_scale`` (the reference's derivative; see the module docstring).
    """
    reference.check_x(x, "x")
    reference.check_int8_weights(int(x.shape[-1]), w_q, w_scale)
    name = _resolve(impl)
    x2, lead = _flatten(x)
    if name == "xla":
        out = reference.w8a16(x2, w_q, w_scale)
    else:
        out = _reference_grad(_kernels(name).w8a16, reference.w8a16, x2, w_q, w_scale)
    return out.reshape(*lead, out.shape[-1])


def w4a16_matmul(
    x: jax.Array, w_packed: jax.Array, scales: jax.Array, *, group_size: int, impl: str = "auto"
) -> jax.Array:
    """Weight-only int4 matmul: ``x [..., K]`` (f32/bf16/f16), ``w_packed [K // 2, N]`` uint8 (two int4 per
    byte, low nibble = even k), ``scales [K // group_size, N]`` -> ``[..., N]`` in ``x.dtype``
    (`reference.w4a16`: per-group partial products scaled, float32 accumulation).

    Differentiable w.r.t. ``x`` and ``scales`` (the reference's derivative; see the module docstring).
    """
    reference.check_x(x, "x")
    reference.check_int4_weights(int(x.shape[-1]), w_packed, scales, group_size)
    name = _resolve(impl)
    x2, lead = _flatten(x)
    ref = functools.partial(reference.w4a16, group_size=group_size)
    if name == "xla":
        out = ref(x2, w_packed, scales)
    else:
        kernel = functools.partial(_kernels(name).w4a16, group_size=group_size)
        out = _reference_grad(kernel, ref, x2, w_packed, scales)
    return out.reshape(*lead, out.shape[-1])
