"""INT8 / INT4 quantized matmuls in Pallas: W8A8, W8A16 and W4A16 with the semantics of `reference`.

One program per ``[block_m, block_n]`` output tile (grid ``(M_pad / block_m, N_pad / block_n)``) holding its row
panel of ``x`` and column panel of the weights, looping over K in ``block_k`` steps; inputs are zero-padded to
whole blocks in the wrapper (exact) and the output sliced back. W8A8: int32 accumulation, dequantizing epilogue;
W8A16: int8 tile converted to the activation dtype (exact), float32 accumulation, scale in the epilogue; W4A16:
low/high nibble planes against the even/odd columns of ``x``, one scale multiply per group.

CPU: interpret mode (``interpret=None`` means True on a non-GPU backend). GPU: the Triton backend of Pallas
(``num_warps``/``num_stages`` via compiler params).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from kernels.int8_matmul import reference

__all__ = ["w4a16", "w8a8", "w8a16"]

_MM = (((1,), (0,)), ((), ()))


def _next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _block(name: str, requested: int | None, default: int, size: int, floor: int) -> int:
    """A power-of-two block: the requested one, else ``default`` shrunk to the problem (never below ``floor``)."""
    if requested is not None:
        if requested < 1 or requested & (requested - 1):
            raise ValueError(f"{name}: expected a power of two, got {requested}")
        return int(requested)
    return min(default, max(floor, _next_pow2(size)))


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _pad2(a: jax.Array, rows: int, cols: int) -> jax.Array:
    pr, pc = rows - a.shape[0], cols - a.shape[1]
    return a if pr == 0 and pc == 0 else jnp.pad(a, ((0, pr), (0, pc)))


def _pad1(a: jax.Array, n: int) -> jax.Array:
    return a if a.shape[0] == n else jnp.pad(a, (0, n - a.shape[0]))


def _resolve_interpret(interpret: bool | None) -> bool:
    return jax.default_backend() != "gpu" if interpret is None else bool(interpret)


def _compiler_params(interpret: bool, num_warps: int | None, num_stages: int | None):
    if interpret or jax.default_backend() != "gpu":
        return None
    from jax.experimental.pallas import triton as pl_triton

    return pl_triton.CompilerParams(num_warps=num_warps or 4, num_stages=num_stages or 2)


def _check_2d(x, name: str) -> tuple[int, int]:
    if x.ndim != 2:
        raise ValueError(f"{name}: expected 2 dimensions [M, K], got shape {tuple(x.shape)}")
    return int(x.shape[0]), int(x.shape[1])


# ---------------------------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------------------------


def _w8a8_kernel(xq_ref, xs_ref, wq_ref, ws_ref, o_ref, *, block_k: int, k_tiles: int):
    bm, bn = o_ref.shape

    def body(t, acc):
        k0 = pl.multiple_of(t * block_k, block_k)
        a = xq_ref[:, pl.ds(k0, block_k)]
        b = wq_ref[pl.ds(k0, block_k), :]
        return acc + lax.dot_general(a, b, _MM, preferred_element_type=jnp.int32)

    acc = lax.fori_loop(0, k_tiles, body, jnp.zeros((bm, bn), jnp.int32))
    out = acc.astype(jnp.float32) * xs_ref[...][:, None] * ws_ref[...][None, :]
    o_ref[...] = out.astype(o_ref.dtype)


def _w8a16_kernel(x_ref, wq_ref, ws_ref, o_ref, *, block_k: int, k_tiles: int):
    bm, bn = o_ref.shape

    def body(t, acc):
        k0 = pl.multiple_of(t * block_k, block_k)
        a = x_ref[:, pl.ds(k0, block_k)]
        b = wq_ref[pl.ds(k0, block_k), :].astype(a.dtype)  # int8 -> activation dtype: exact
        return acc + lax.dot_general(a, b, _MM, preferred_element_type=jnp.float32, precision=lax.Precision.HIGHEST)

    acc = lax.fori_loop(0, k_tiles, body, jnp.zeros((bm, bn), jnp.float32))
    o_ref[...] = (acc * ws_ref[...][None, :]).astype(o_ref.dtype)


def _w4a16_kernel(xe_ref, xo_ref, wp_ref, s_ref, o_ref, *, group_size: int, block_k: int, groups: int):
    bm, bn = o_ref.shape
    half = block_k // 2

    def dot(a, b):
        return lax.dot_general(a, b, _MM, preferred_element_type=jnp.float32, precision=lax.Precision.HIGHEST)

    def group(g, acc):
        part = jnp.zeros((bm, bn), jnp.float32)
        for i in range(group_size // block_k):  # static: the K tiles of one group
            h0 = pl.multiple_of(g * (group_size // 2) + i * half, half)  # packed row = k // 2
            v = wp_ref[pl.ds(h0, half), :].astype(jnp.int32)
            lo = ((v & 15) ^ 8) - 8  # even k, sign-extended 4-bit
            hi = ((v >> 4) ^ 8) - 8  # odd k
            xe = xe_ref[:, pl.ds(h0, half)]
            xo = xo_ref[:, pl.ds(h0, half)]
            part = part + dot(xe, lo.astype(xe.dtype))
            part = part + dot(xo, hi.astype(xo.dtype))
        return acc + part * s_ref[pl.ds(g, 1), :]

    acc = lax.fori_loop(0, groups, group, jnp.zeros((bm, bn), jnp.float32))
    o_ref[...] = acc.astype(o_ref.dtype)


# ---------------------------------------------------------------------------------------------------------------
# Wrappers
# ---------------------------------------------------------------------------------------------------------------


def _tiles(m: int, n: int, bm: int, bn: int):
    m_pad, n_pad = _round_up(m, bm), _round_up(n, bn)
    return m_pad, n_pad, (m_pad // bm, n_pad // bn)


def w8a8(
    x_q: jax.Array,
    x_scale: jax.Array,
    w_q: jax.Array,
    w_scale: jax.Array,
    out_dtype=jnp.bfloat16,
    *,
    block_m: int | None = None,
    block_n: int | None = None,
    block_k: int | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
    interpret: bool | None = None,
) -> jax.Array:
    """``x_q [M, K]`` int8, ``x_scale [M, 1]`` f32, ``w_q [K, N]`` int8, ``w_scale [1, N]`` -> ``[M, N]``.

    Same value as `reference.w8a8` (the int32 accumulation is exact). Blocks: powers of two; defaults
    ``64 x 64 x 64`` shrunk to the problem (``block_k`` >= 32: int8 dots need K >= 32 on NVIDIA GPUs).
    """
    reference.check_x(x_q, "x_q", dtypes=(jnp.dtype(jnp.int8),), min_ndim=2)
    m, k = _check_2d(x_q, "x_q")
    n = reference.check_int8_weights(k, w_q, w_scale)
    reference._check_scale(x_scale, "x_scale", (m, 1))
    out_dtype = jnp.dtype(out_dtype)
    if m == 0 or n == 0 or k == 0:
        return jnp.zeros((m, n), out_dtype)
    interpret = _resolve_interpret(interpret)
    bm = _block("block_m", block_m, 64, m, 16)
    bn = _block("block_n", block_n, 64, n, 16)
    bk = _block("block_k", block_k, 64, k, 32)
    m_pad, n_pad, grid = _tiles(m, n, bm, bn)
    k_pad = _round_up(k, bk)
    xq = _pad2(x_q, m_pad, k_pad)
    wq = _pad2(w_q, k_pad, n_pad)
    xs = _pad1(x_scale.astype(jnp.float32).reshape(m), m_pad)
    ws = _pad1(w_scale.astype(jnp.float32).reshape(n), n_pad)
    out = pl.pallas_call(
        functools.partial(_w8a8_kernel, block_k=bk, k_tiles=k_pad // bk),
        grid=grid,
        in_specs=[
            pl.BlockSpec((bm, k_pad), lambda i, j: (i, 0)),
            pl.BlockSpec((bm,), lambda i, j: (i,)),
            pl.BlockSpec((k_pad, bn), lambda i, j: (0, j)),
            pl.BlockSpec((bn,), lambda i, j: (j,)),
        ],
        out_specs=pl.BlockSpec((bm, bn), lambda i, j: (i, j)),
        out_shape=jax.ShapeDtypeStruct((m_pad, n_pad), out_dtype),
        compiler_params=_compiler_params(interpret, num_warps, num_stages),
        interpret=interpret,
        name="w8a8_matmul",
    )(xq, xs, wq, ws)
    return out[:m, :n]


def w8a16(
    x: jax.Array,
    w_q: jax.Array,
    w_scale: jax.Array,
    *,
    block_m: int | None = None,
    block_n: int | None = None,
    block_k: int | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
    interpret: bool | None = None,
) -> jax.Array:
    """``x [M, K]`` (f32/bf16/f16), ``w_q [K, N]`` int8, ``w_scale [1, N]`` -> ``[M, N]`` in ``x.dtype``.

    Same value as `reference.w8a16` up to float32 summation order. Default blocks ``64 x 64 x 64`` shrunk to the
    problem (``block_m`` 16 for decode-sized M).
    """
    reference.check_x(x, "x", min_ndim=2)
    m, k = _check_2d(x, "x")
    n = reference.check_int8_weights(k, w_q, w_scale)
    if m == 0 or n == 0 or k == 0:
        return jnp.zeros((m, n), x.dtype)
    interpret = _resolve_interpret(interpret)
    bm = _block("block_m", block_m, 64, m, 16)
    bn = _block("block_n", block_n, 64, n, 16)
    bk = _block("block_k", block_k, 64, k, 16)
    m_pad, n_pad, grid = _tiles(m, n, bm, bn)
    k_pad = _round_up(k, bk)
    xp = _pad2(x, m_pad, k_pad)
    wq = _pad2(w_q, k_pad, n_pad)
    ws = _pad1(w_scale.astype(jnp.float32).reshape(n), n_pad)
    out = pl.pallas_call(
        functools.partial(_w8a16_kernel, block_k=bk, k_tiles=k_pad // bk),
        grid=grid,
        in_specs=[
            pl.BlockSpec((bm, k_pad), lambda i, j: (i, 0)),
            pl.BlockSpec((k_pad, bn), lambda i, j: (0, j)),
            pl.BlockSpec((bn,), lambda i, j: (j,)),
        ],
        out_specs=pl.BlockSpec((bm, bn), lambda i, j: (i, j)),
        out_shape=jax.ShapeDtypeStruct((m_pad, n_pad), x.dtype),
        compiler_params=_compiler_params(interpret, num_warps, num_stages),
        interpret=interpret,
        name="w8a16_matmul",
    )(xp, wq, ws)
    return out[:m, :n]


def w4a16(
    x: jax.Array,
    w_packed: jax.Array,
    scales: jax.Array,
    group_size: int,
    *,
    block_m: int | None = None,
    block_n: int | None = None,
    block_k: int | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
    interpret: bool | None = None,
) -> jax.Array:
    """``x [M, K]``, ``w_packed [K // 2, N]`` uint8, ``scales [K // group_size, N]`` -> ``[M, N]`` in ``x.dtype``.

    Same value as `reference.w4a16` up to float32 summation order. ``block_k`` (default 128) is reduced to the
    largest power of two dividing ``group_size`` (>= 32 when compiled for a GPU).
    """
    reference.check_x(x, "x", min_ndim=2)
    m, k = _check_2d(x, "x")
    n = reference.check_int4_weights(k, w_packed, scales, group_size)
    if m == 0 or n == 0 or k == 0:
        return jnp.zeros((m, n), x.dtype)
    interpret = _resolve_interpret(interpret)
    bm = _block("block_m", block_m, 64, m, 16)
    bn = _block("block_n", block_n, 64, n, 16)
    if block_k is not None:
        _block("block_k", block_k, 0, 0, 0)
    bk = reference.int4_block_k(block_k or 128, group_size, 2 if interpret else 32)
    m_pad, n_pad, grid = _tiles(m, n, bm, bn)
    groups, half_k = k // group_size, k // 2
    xe = _pad2(x[:, 0::2], m_pad, half_k)  # even k: matches the low nibbles
    xo = _pad2(x[:, 1::2], m_pad, half_k)  # odd k: the high nibbles
    wp = _pad2(w_packed, half_k, n_pad)
    sc = _pad2(scales.astype(jnp.float32), groups, n_pad)
    x_spec = pl.BlockSpec((bm, half_k), lambda i, j: (i, 0))
    out = pl.pallas_call(
        functools.partial(_w4a16_kernel, group_size=group_size, block_k=bk, groups=groups),
        grid=grid,
        in_specs=[
            x_spec,
            x_spec,
            pl.BlockSpec((half_k, bn), lambda i, j: (0, j)),
            pl.BlockSpec((groups, bn), lambda i, j: (0, j)),
        ],
        out_specs=pl.BlockSpec((bm, bn), lambda i, j: (i, j)),
        out_shape=jax.ShapeDtypeStruct((m_pad, n_pad), x.dtype),
        compiler_params=_compiler_params(interpret, num_warps, num_stages),
        interpret=interpret,
        name="w4a16_matmul",
    )(xe, xo, wp, sc)
    return out[:m, :n]
