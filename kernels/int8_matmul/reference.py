"""INT8 / INT4 quantized matmuls in plain jnp: the numerical truth every kernel is tested against.

Layout: activations ``x [M, K]``, weights ``w [K, N]``, output ``[M, N]``. Symmetric quantization, no zero points:
``quantize_per_token(x)`` -> ``x_q`` int8, ``x_scale [M, 1]`` = max|row| / 127 (all-zero rows: scale 1);
``quantize_per_channel(w)`` -> ``w_q`` int8, ``w_scale [1, N]``; ``quantize_int4(w, group_size)`` -> ``w_packed
[K // 2, N]`` uint8 (low nibble = even k, two's complement) and ``scales [K // group_size, N]`` = max|group| / 7.

Matmuls (the kernels' semantics): ``w8a8``: ``x_q @ w_q`` exactly in int32, then ``(float32(acc) * x_scale) *
w_scale``; ``w8a16``: ``x @ float(w_q)`` with float32 accumulation, times ``w_scale``, in ``x.dtype``; ``w4a16``:
``sum_g (x[:, g] @ float(q[g])) * scales[g]`` in float32, in ``x.dtype``. Everything here is differentiable JAX
(``round`` has a zero derivative); see `kernels.int8_matmul.api` for the gradients of the public ops.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "ACT_DTYPES",
    "check_int4_weights",
    "check_int8_weights",
    "check_x",
    "dequantize_int4",
    "dequantize_per_channel",
    "dequantize_per_token",
    "int4_block_k",
    "pack_int4",
    "quantize_int4",
    "quantize_per_channel",
    "quantize_per_token",
    "unpack_int4",
    "w4a16",
    "w8a8",
    "w8a16",
]

INT8_MAX = 127
INT4_MAX = 7
ACT_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


# ---------------------------------------------------------------------------------------------------------------
# Argument checks (shared by the reference, the kernels and the api; errors name the argument)
# ---------------------------------------------------------------------------------------------------------------


def _shape(a) -> tuple[int, ...]:
    return tuple(int(d) for d in a.shape)


def check_x(x, name: str = "x", *, dtypes=ACT_DTYPES, min_ndim: int = 1) -> None:
    """``x [..., K]``: a floating array of one of ``dtypes``."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name}: expected an array, got {type(x).__name__}")
    if x.ndim < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim} dimension(s) [..., K], got shape {_shape(x)}")
    if jnp.dtype(x.dtype) not in dtypes:
        raise TypeError(f"{name}: expected dtype in {[d.name for d in dtypes]}, got {jnp.dtype(x.dtype).name}")


def _check_scale(scale, name: str, shape: tuple[int, ...]) -> None:
    if not hasattr(scale, "shape") or not hasattr(scale, "dtype"):
        raise TypeError(f"{name}: expected an array, got {type(scale).__name__}")
    if _shape(scale) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {_shape(scale)}")
    if not jnp.issubdtype(scale.dtype, jnp.floating):
        raise TypeError(f"{name}: expected a floating dtype (float32), got {jnp.dtype(scale.dtype).name}")


def check_int8_weights(k: int, w_q, w_scale) -> int:
    """``w_q [K, N]`` int8 and ``w_scale [1, N]`` float for activations with ``K = k``; returns N."""
    if not hasattr(w_q, "shape") or not hasattr(w_q, "dtype"):
        raise TypeError(f"w_q: expected an array, got {type(w_q).__name__}")
    if w_q.ndim != 2:
        raise ValueError(f"w_q: expected 2 dimensions [K, N], got shape {_shape(w_q)}")
    if jnp.dtype(w_q.dtype) != jnp.int8:
        raise TypeError(f"w_q: expected dtype int8, got {jnp.dtype(w_q.dtype).name}")
    if w_q.shape[0] != k:
        raise ValueError(f"w_q: expected shape ({k}, N) (K = x.shape[-1] = {k}), got {_shape(w_q)}")
    n = int(w_q.shape[1])
    _check_scale(w_scale, "w_scale", (1, n))
    return n


def check_group_size(k: int, group_size) -> int:
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise TypeError(f"group_size: expected an int, got {type(group_size).__name__}")
    if group_size <= 0 or group_size % 2:
        raise ValueError(f"group_size: expected a positive even int, got {group_size}")
    if k % group_size:
        raise ValueError(f"group_size: must divide K = {k}, got {group_size}")
    return group_size


def int4_block_k(requested: int, group_size: int, floor: int) -> int:
    """A W4A16 kernel's K tile: the largest power of two <= ``requested`` dividing ``group_size`` (so a tile never
    straddles two groups); ValueError naming ``group_size`` if that is below ``floor`` (32 on GPUs, where each
    of the two nibble dots of a tile needs K >= 16)."""
    b = min(requested, group_size & -group_size)  # group_size & -group_size: its largest power-of-two divisor
    if b < floor:
        raise ValueError(
            f"group_size: {group_size} has no power-of-two divisor >= {floor}; the W4A16 kernels need K tiles of at "
            f"least {floor} inside one group (use a group_size that is a multiple of {floor})"
        )
    return b


def check_int4_weights(k: int, w_packed, scales, group_size) -> int:
    """``w_packed [K // 2, N]`` uint8 and ``scales [K // group_size, N]`` float for ``K = k``; returns N."""
    check_group_size(k, group_size)
    if not hasattr(w_packed, "shape") or not hasattr(w_packed, "dtype"):
        raise TypeError(f"w_packed: expected an array, got {type(w_packed).__name__}")
    if w_packed.ndim != 2:
        raise ValueError(f"w_packed: expected 2 dimensions [K // 2, N], got shape {_shape(w_packed)}")
    if jnp.dtype(w_packed.dtype) != jnp.uint8:
        raise TypeError(f"w_packed: expected dtype uint8 (two int4 per byte), got {jnp.dtype(w_packed.dtype).name}")
    if w_packed.shape[0] * 2 != k:
        raise ValueError(f"w_packed: expected shape ({k // 2}, N) (K = x.shape[-1] = {k}), got {_shape(w_packed)}")
    n = int(w_packed.shape[1])
    _check_scale(scales, "scales", (k // group_size, n))
    return n


# ---------------------------------------------------------------------------------------------------------------
# Quantization
# ---------------------------------------------------------------------------------------------------------------


def _absmax_scale(a: jax.Array, axis, qmax: int) -> jax.Array:
    amax = jnp.max(jnp.abs(a.astype(jnp.float32)), axis=axis, keepdims=True)
    return jnp.where(amax > 0, amax / qmax, jnp.float32(1.0))  # all-zero rows/columns: scale 1, values 0


def quantize_per_token(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Symmetric abs-max int8 per row. ``x [..., K]`` float -> ``(x_q [..., K] int8, x_scale [..., 1] float32)``."""
    check_x(x, "x", dtypes=(*ACT_DTYPES, jnp.dtype(jnp.float64)))
    scale = _absmax_scale(x, -1, INT8_MAX)
    q = jnp.clip(jnp.round(x.astype(jnp.float32) / scale), -INT8_MAX, INT8_MAX).astype(jnp.int8)
    return q, scale


def quantize_per_channel(w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Symmetric abs-max int8 per output column. ``w [K, N]`` float -> ``(w_q [K, N] int8, w_scale [1, N] f32)``."""
    check_x(w, "w", dtypes=(*ACT_DTYPES, jnp.dtype(jnp.float64)), min_ndim=2)
    if w.ndim != 2:
        raise ValueError(f"w: expected 2 dimensions [K, N], got shape {_shape(w)}")
    scale = _absmax_scale(w, 0, INT8_MAX)
    q = jnp.clip(jnp.round(w.astype(jnp.float32) / scale), -INT8_MAX, INT8_MAX).astype(jnp.int8)
    return q, scale


def dequantize_per_token(x_q: jax.Array, x_scale: jax.Array) -> jax.Array:
    """``x_q [..., K]`` int8, ``x_scale [..., 1]`` -> float32 ``x_q * x_scale``."""
    return x_q.astype(jnp.float32) * x_scale


def dequantize_per_channel(w_q: jax.Array, w_scale: jax.Array) -> jax.Array:
    """``w_q [K, N]`` int8, ``w_scale [1, N]`` -> float32 ``w_q * w_scale``."""
    return w_q.astype(jnp.float32) * w_scale


def pack_int4(q: jax.Array) -> jax.Array:
    """``q [K, N]`` int8 holding values in [-8, 7] -> ``[K // 2, N]`` uint8 (low nibble = even k, high = odd k)."""
    if q.ndim != 2 or q.shape[0] % 2:
        raise ValueError(f"q: expected shape [K, N] with even K, got {_shape(q)}")
    nib = q.astype(jnp.int32) & 0xF  # two's complement low 4 bits
    return (nib[0::2] | (nib[1::2] << 4)).astype(jnp.uint8)


def unpack_int4(w_packed: jax.Array) -> jax.Array:
    """``w_packed [K // 2, N]`` uint8 -> ``[K, N]`` int8 in [-8, 7] (inverse of :func:`pack_int4`)."""
    if w_packed.ndim != 2 or jnp.dtype(w_packed.dtype) != jnp.uint8:
        raise ValueError(f"w_packed: expected a [K // 2, N] uint8 array, got {w_packed.dtype}{list(w_packed.shape)}")
    v = w_packed.astype(jnp.int32)
    lo = ((v & 0xF) ^ 8) - 8  # sign-extend a 4-bit two's complement value
    hi = ((v >> 4) ^ 8) - 8
    k2, n = w_packed.shape
    return jnp.stack([lo, hi], axis=1).reshape(2 * k2, n).astype(jnp.int8)


def quantize_int4(w: jax.Array, group_size: int = 128) -> tuple[jax.Array, jax.Array]:
    """Symmetric abs-max int4, one scale per ``group_size`` rows of each column.

    ``w [K, N]`` float (K divisible by ``group_size``, an even int) -> ``(w_packed [K // 2, N] uint8,
    scales [K // group_size, N] float32)``; values are in [-7, 7].
    """
    check_x(w, "w", dtypes=(*ACT_DTYPES, jnp.dtype(jnp.float64)), min_ndim=2)
    if w.ndim != 2:
        raise ValueError(f"w: expected 2 dimensions [K, N], got shape {_shape(w)}")
    k, n = _shape(w)
    check_group_size(k, group_size)
    wg = w.astype(jnp.float32).reshape(k // group_size, group_size, n)
    scale = _absmax_scale(wg, 1, INT4_MAX)  # [G, 1, N]
    q = jnp.clip(jnp.round(wg / scale), -INT4_MAX, INT4_MAX).astype(jnp.int8).reshape(k, n)
    return pack_int4(q), scale[:, 0, :]


def dequantize_int4(w_packed: jax.Array, scales: jax.Array, group_size: int) -> jax.Array:
    """``w_packed [K // 2, N]``, ``scales [K // group_size, N]`` -> float32 ``[K, N]``."""
    q = unpack_int4(w_packed).astype(jnp.float32)
    k, n = q.shape
    return (q.reshape(k // group_size, group_size, n) * scales[:, None, :]).reshape(k, n)


# ---------------------------------------------------------------------------------------------------------------
# Matmuls
# ---------------------------------------------------------------------------------------------------------------

_MM = (((1,), (0,)), ((), ()))  # [M, K] x [K, N]


def w8a8(x_q: jax.Array, x_scale: jax.Array, w_q: jax.Array, w_scale: jax.Array, out_dtype=jnp.bfloat16) -> jax.Array:
    """``x_q [M, K]`` int8, ``x_scale [M, 1]`` f32, ``w_q [K, N]`` int8, ``w_scale [1, N]`` f32 -> ``[M, N]``.

    ``(float32(x_q @ w_q) * x_scale) * w_scale`` with the product accumulated exactly in int32 (|acc| <=
    127² K, exact for K < 133,000), cast to ``out_dtype``.
    """
    acc = lax.dot_general(x_q, w_q, _MM, preferred_element_type=jnp.int32)
    return (acc.astype(jnp.float32) * x_scale.astype(jnp.float32) * w_scale.astype(jnp.float32)).astype(out_dtype)


def w8a16(x: jax.Array, w_q: jax.Array, w_scale: jax.Array) -> jax.Array:
    """``x [M, K]`` (f32/bf16/f16), ``w_q [K, N]`` int8, ``w_scale [1, N]`` -> ``[M, N]`` in ``x.dtype``.

    ``(x @ w_q) * w_scale`` with the weight converted to ``x.dtype`` (exact), float32 accumulation (full float32
    precision for float32 x), the scale applied in float32.
    """
    acc = lax.dot_general(
        x, w_q.astype(x.dtype), _MM, preferred_element_type=jnp.float32, precision=lax.Precision.HIGHEST
    )
    return (acc * w_scale.astype(jnp.float32)).astype(x.dtype)


def w4a16(x: jax.Array, w_packed: jax.Array, scales: jax.Array, group_size: int) -> jax.Array:
    """``x [M, K]``, ``w_packed [K // 2, N]`` uint8, ``scales [K // group_size, N]`` -> ``[M, N]`` in ``x.dtype``.

    ``sum_g (x[:, g] @ q[g]) * scales[g]`` over the K groups, float32 accumulation, cast to ``x.dtype``.
    """
    m, k = _shape(x)
    q = unpack_int4(w_packed)
    n = q.shape[1]
    g = k // group_size
    xg = x.reshape(m, g, group_size)
    qg = q.astype(x.dtype).reshape(g, group_size, n)
    part = jnp.einsum("mgk,gkn->gmn", xg, qg, preferred_element_type=jnp.float32, precision=lax.Precision.HIGHEST)
    return jnp.sum(part * scales.astype(jnp.float32)[:, None, :], axis=0).astype(x.dtype)
