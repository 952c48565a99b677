"""The Triton kernels of the INT8 / INT4 matmuls (W8A8, W8A16, W4A16), written once with `kernels.triton_call.jit`
so the same source runs on a GPU (jax-triton) and in Triton's interpreter on CPU.

One program per `[BLOCK_M, BLOCK_N]` output tile and K slice (grid `(tiles_m * tiles_n, SPLIT_K)`); `EPILOGUE`
selects the fused dequantizing store (`out [M, N]`) or the split-K partial sums (`[SPLIT_K, M, N]`, int32 for W8A8,
float32 otherwise). Launches, shapes and dtypes: `kernels.int8_matmul.triton`; the algorithm: `kernels/README.md`.
"""

import triton.language as tl

from kernels.triton_call import jit

# Kernel signatures are kept compact by hand.
# fmt: off


@jit
def _tile_ids(M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """(pid_m, pid_n) of program_id(0), row tiles grouped by GROUP_M for L2 reuse."""
    pid = tl.program_id(0)
    tiles_m = tl.cdiv(M, BLOCK_M)
    tiles_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * tiles_n
    first_m = (pid // per_group) * GROUP_M
    group_rows = tl.minimum(tiles_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % group_rows
    pid_n = (pid % per_group) // group_rows
    return pid_m, pid_n


@jit
def _w8a8_kernel(
    xq_ptr, xs_ptr, wq_ptr, ws_ptr, M, N, K, tiles_per_split, out_ptr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    EPILOGUE: tl.constexpr,
):
    """out [M, N] (EPILOGUE) or int32 partial sums [SPLIT_K, M, N] of int8 x_q [M, K] @ int8 w_q [K, N]."""
    pid_m, pid_n = _tile_ids(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    pid_k = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    m_mask = offs_m < M
    n_mask = offs_n < N
    rows = offs_m.to(tl.int64) * K
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    t_lo = pid_k * tiles_per_split
    t_hi = tl.minimum(t_lo + tiles_per_split, tl.cdiv(K, BLOCK_K))
    for t in range(t_lo, t_hi):
        ks = t * BLOCK_K + offs_k
        k_mask = ks < K
        a = tl.load(xq_ptr + rows[:, None] + ks[None, :], mask=m_mask[:, None] & k_mask[None, :], other=0)
        b = tl.load(wq_ptr + ks.to(tl.int64)[:, None] * N + offs_n[None, :], mask=k_mask[:, None] & n_mask[None, :],
                    other=0)
        acc = tl.dot(a, b, acc, out_dtype=tl.int32)
    out_offs = offs_m.to(tl.int64)[:, None] * N + offs_n[None, :]
    out_mask = m_mask[:, None] & n_mask[None, :]
    if EPILOGUE:
        xs = tl.load(xs_ptr + offs_m, mask=m_mask, other=0.0)
        ws = tl.load(ws_ptr + offs_n, mask=n_mask, other=0.0)
        out = acc.to(tl.float32) * xs[:, None] * ws[None, :]
        tl.store(out_ptr + out_offs, out.to(out_ptr.dtype.element_ty), mask=out_mask)
    else:
        tl.store(out_ptr + pid_k.to(tl.int64) * M * N + out_offs, acc, mask=out_mask)


@jit
def _w8a16_kernel(
    x_ptr, wq_ptr, ws_ptr, M, N, K, tiles_per_split, out_ptr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    EPILOGUE: tl.constexpr, PRECISION: tl.constexpr,
):
    """out [M, N] = (x @ w_q) * w_scale (EPILOGUE) or float32 partials [SPLIT_K, M, N] of x @ w_q (no scale)."""
    pid_m, pid_n = _tile_ids(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    pid_k = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    m_mask = offs_m < M
    n_mask = offs_n < N
    rows = offs_m.to(tl.int64) * K
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    t_lo = pid_k * tiles_per_split
    t_hi = tl.minimum(t_lo + tiles_per_split, tl.cdiv(K, BLOCK_K))
    for t in range(t_lo, t_hi):
        ks = t * BLOCK_K + offs_k
        k_mask = ks < K
        a = tl.load(x_ptr + rows[:, None] + ks[None, :], mask=m_mask[:, None] & k_mask[None, :], other=0.0)
        b = tl.load(wq_ptr + ks.to(tl.int64)[:, None] * N + offs_n[None, :], mask=k_mask[:, None] & n_mask[None, :],
                    other=0)
        acc = tl.dot(a, b.to(a.dtype), acc, input_precision=PRECISION)  # int8 -> x dtype is exact
    out_offs = offs_m.to(tl.int64)[:, None] * N + offs_n[None, :]
    out_mask = m_mask[:, None] & n_mask[None, :]
    if EPILOGUE:
        ws = tl.load(ws_ptr + offs_n, mask=n_mask, other=0.0)
        out = acc * ws[None, :]
        tl.store(out_ptr + out_offs, out.to(out_ptr.dtype.element_ty), mask=out_mask)
    else:
        tl.store(out_ptr + pid_k.to(tl.int64) * M * N + out_offs, acc, mask=out_mask)


@jit
def _w4a16_kernel(
    x_ptr, wp_ptr, s_ptr, M, N, K, groups_per_split, out_ptr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    GROUP_SIZE: tl.constexpr, EPILOGUE: tl.constexpr, PRECISION: tl.constexpr,
):
    """out [M, N] = sum_g (x[:, g] @ q[g]) * scales[g] (EPILOGUE: cast to out dtype; else float32 partials)."""
    pid_m, pid_n = _tile_ids(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    pid_k = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_h = tl.arange(0, BLOCK_K // 2)  # packed rows of a tile: k = 2 * h (low nibble) and 2 * h + 1 (high)
    m_mask = offs_m < M
    n_mask = offs_n < N
    rows = offs_m.to(tl.int64) * K
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    g_lo = pid_k * groups_per_split
    g_hi = tl.minimum(g_lo + groups_per_split, K // GROUP_SIZE)
    for g in range(g_lo, g_hi):
        part = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for i in range(GROUP_SIZE // BLOCK_K):
            h = (g * GROUP_SIZE + i * BLOCK_K) // 2 + offs_h  # packed row index; K is a multiple of GROUP_SIZE
            p = tl.load(wp_ptr + h.to(tl.int64)[:, None] * N + offs_n[None, :], mask=n_mask[None, :], other=0)
            v = p.to(tl.int32)
            lo = ((v & 15) ^ 8) - 8  # even k, sign-extended
            hi = ((v >> 4) ^ 8) - 8  # odd k
            x_even = tl.load(x_ptr + rows[:, None] + (2 * h)[None, :], mask=m_mask[:, None], other=0.0)
            x_odd = tl.load(x_ptr + rows[:, None] + (2 * h + 1)[None, :], mask=m_mask[:, None], other=0.0)
            part = tl.dot(x_even, lo.to(x_even.dtype), part, input_precision=PRECISION)
            part = tl.dot(x_odd, hi.to(x_odd.dtype), part, input_precision=PRECISION)
        s = tl.load(s_ptr + g * N + offs_n, mask=n_mask, other=0.0)
        acc += part * s[None, :]
    out_offs = offs_m.to(tl.int64)[:, None] * N + offs_n[None, :]
    out_mask = m_mask[:, None] & n_mask[None, :]
    if EPILOGUE:
        tl.store(out_ptr + out_offs, acc.to(out_ptr.dtype.element_ty), mask=out_mask)
    else:
        tl.store(out_ptr + pid_k.to(tl.int64) * M * N + out_offs, acc, mask=out_mask)


# fmt: on
