"""FlashAttention-2/3-style fused attention in Triton: forward, dK/dV and dQ kernels under one `jax.custom_vjp`.

Semantics are those of `kernels.attention.reference` (layout `[batch, seq, heads, head_dim]`, GQA/MQA, causal with
bottom-right alignment when `Sq != Skv`, sliding window, separate q/kv segment ids, fully masked rows -> zeros and
zero gradients). The kernels are written once with `kernels.triton_call.jit` and launched with
`kernels.triton_call.triton_call`: through jax-triton on a GPU, through Triton's interpreter (numpy, inside a
`jax.pure_callback`) elsewhere. jax-triton has no autodiff, hence the custom VJP.

Kernels
-------
* `_fwd_kernel`, grid `(cdiv(Sq, BLOCK_M), B * Hq)`: one query tile `[BLOCK_M, D]` stays in registers while the
  program streams the key/value tiles of its kv head (`h // (Hq // Hkv)`) with an online softmax in float32
  (running max `m`, running sum `l`, unnormalized accumulator). Scores are prescaled by `scale * log2(e)` so every
  exponential is an `exp2`. Both matmuls go through `tl.dot` with float32 accumulation; `P` is cast to the input
  dtype before `P @ V` (as FlashAttention does). Writes O in the input dtype and the natural-log logsumexp
  `L [B, Hq, Sq]` (float32; `-inf` for rows that see no key) as the residual for the backward.
* `_delta_kernel`: `delta = rowsum(dO * O)` in float32 `[B, Hq, Sq]`.
* `_dkv_kernel`, grid `(cdiv(Skv, BLOCK_N), B * Hkv)`: one key/value tile per program; loops over the query heads of
  its GQA group and, for each, over the query tiles that can see the tile, recomputing `P = exp2(S - L)` from the
  stored logsumexp: `dV += Pᵀ dO`, `dK += dSᵀ Q` with `dS = P ∘ (dO Vᵀ - delta)`. Summing the group inside the
  program gives GQA/MQA dK/dV without atomics or `[B, S, Hq, D]` temporaries.
* `_dq_kernel`, grid `(cdiv(Sq, BLOCK_M), B * Hq)`: one query tile per program, loops over key/value tiles,
  `dQ += dS K`.

Why dK/dV + dQ as two kernels rather than one kernel with atomic dQ updates (FlashAttention-2's CUDA backward,
FA3): no float32 dQ scratch buffer, no zero-fill and no extra cast pass; results are deterministic (atomics add in
arbitrary order); and it launches through jax-triton with plain outputs. The price is recomputing `Q Kᵀ` and
`dO Vᵀ` in the dQ kernel (7 matmuls per tile pair instead of 5), which the Triton tutorial and FlashAttention's
Triton backward also pay.

Masking and block skipping
--------------------------
Each program splits its loop over the other sequence into three ranges: tiles entirely inside the causal/window
band and inside both sequences run *without* any mask arithmetic or boundary checks on loads; the tiles at the band
edges and at ragged sequence ends run with the elementwise mask; tiles entirely outside the band are never visited
(loop bounds from `program_id`). Segment ids add an elementwise mask in every tile (they do not skip tiles). With
plain causal masking the forward and dQ grids run their query tiles last-first, so the heaviest programs start
first (FlashAttention-2 does the same).
Fully masked rows: while a row's running max is still `-inf` the exponentials use 0 as reference point, so they
come out 0 (never NaN); the epilogue maps `l = 0` to output 0 and `L = -inf`. In the backward such a row has
`exp2(S - L) = inf`, which only ever occurs in masked tiles (a row of a mask-free tile sees keys), where the mask
selects 0.

Shapes: head dims are powers of two 16..256 (`BLOCK_D = head_dim`); any other head dim <= 256 is zero-padded in the
wrapper (exact). Sequence lengths are arbitrary (boundary masks, no padding); offsets inside one sequence are
32-bit, so `seq * heads * head_dim < 2**31` (checked). float32 inputs use `input_precision="ieee"` dots (exact
float32, no TF32; on a GPU these are FMA loops, a correctness path), bfloat16/float16 the tensor cores. Like
jax-triton, the op composes with jit, grad and checkpoint but not with vmap.

"FlashAttention-3-style" only as far as Triton takes it: compiled for sm_90, the dots become Hopper warpgroup MMAs
(`HGMMA`, checked in the offline compile) and `num_stages` software-pipelines the K/V loads; there is no explicit
warp specialization, TMA descriptors, ping-pong scheduling or FP8 as in FlashAttention-3's CUDA kernels.

What was verified where: on CPU, every kernel path through Triton's interpreter against the reference
(tests/test_attention_triton.py); for sm_90, compilation of the table's configurations with Triton's bundled ptxas
(`python -m kernels.attention.tune --compile-report`: registers, spills, shared memory, HGMMA). Not verified here:
GPU execution and speed (no GPU was available); the `gpu`-marked tests and `tune.py` do that on a GPU machine.

Launch configurations (`BLOCK_M`, `BLOCK_N`, `num_warps`, `num_stages` per kernel) come from `autotune.json` (see
:func:`lookup_config`), rewritten on a GPU by `python -m kernels.attention.tune`.
"""

import dataclasses
import functools
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import triton
import triton.language as tl

from kernels import launch_table
from kernels.attention.reference import Window, validate
from kernels.launch_table import device_key, field_matches, short_device_name  # noqa: F401 (re-exported)
from kernels.triton_call import jit, triton_call

__all__ = [
    "KernelConfig",
    "LaunchConfig",
    "attention",
    "device_key",
    "load_table",
    "lookup_config",
    "resolve_config",
    "seq_bucket",
    "short_device_name",
]

TABLE_PATH = pathlib.Path(__file__).with_name("autotune.json")
SUPPORTED_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)
KERNELS = ("fwd", "bwd_dkv", "bwd_dq")  # the table's per-kernel sections

_LOG2E = tl.constexpr(1.4426950408889634)
_LN2 = tl.constexpr(0.6931471805599453)


# ===============================================================================================================
# Kernels
# ===============================================================================================================
# Kernel signatures and calls are kept compact by hand.
# fmt: off


@jit
def _visible(
    q_idx, k_idx, q_len, kv_len, shift, q_seg, kv_seg, CAUSAL: tl.constexpr, LEFT: tl.constexpr, RIGHT: tl.constexpr,
    BAND: tl.constexpr, HAS_SEG: tl.constexpr
):
    """bool tile: query `q_idx` sees key `k_idx` (broadcasting index tensors, either orientation).

    BAND: apply the sequence bounds and the causal/window band (query i sits at key position i + shift);
    HAS_SEG: require equal segment ids (q_seg / kv_seg shaped like q_idx / k_idx). LEFT/RIGHT < 0: unbounded.
    """
    vis = (q_idx < q_len) & (k_idx < kv_len)
    if BAND:
        q_pos = q_idx + shift
        if CAUSAL:
            vis = vis & (k_idx <= q_pos)
        elif RIGHT >= 0:
            vis = vis & (k_idx <= q_pos + RIGHT)
        if LEFT >= 0:
            vis = vis & (k_idx >= q_pos - LEFT)
    if HAS_SEG:
        vis = vis & (q_seg == kv_seg)
    return vis


@jit
def _kv_ranges(
    q_start, shift, kv_len, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, LEFT: tl.constexpr,
    RIGHT: tl.constexpr
):
    """Key tiles for the query tile [q_start, q_start + BLOCK_M): lo <= full_lo <= full_hi <= hi (if lo <= hi).

    [lo, hi): keys some query of the tile may see; [full_lo, full_hi): BLOCK_N-aligned tiles that every query of
    the tile sees in full (inside the band and inside kv_len), which need no mask. lo, full_lo and full_hi are
    multiples of BLOCK_N (full_lo may equal hi instead, then both ranges after it are empty).
    """
    first = q_start + shift  # key-axis position of the tile's first query (may be negative)
    last = first + (BLOCK_M - 1)
    hi = kv_len
    full_hi = (kv_len // BLOCK_N) * BLOCK_N
    if CAUSAL:
        hi = tl.minimum(hi, last + 1)
        full_hi = tl.minimum(full_hi, (tl.maximum(first + 1, 0) // BLOCK_N) * BLOCK_N)
    elif RIGHT >= 0:
        hi = tl.minimum(hi, last + RIGHT + 1)
        full_hi = tl.minimum(full_hi, (tl.maximum(first + RIGHT + 1, 0) // BLOCK_N) * BLOCK_N)
    lo = hi * 0
    full_lo = hi * 0
    if LEFT >= 0:
        lo = (tl.maximum(first - LEFT, 0) // BLOCK_N) * BLOCK_N
        full_lo = ((tl.maximum(last - LEFT, 0) + (BLOCK_N - 1)) // BLOCK_N) * BLOCK_N
    full_lo = tl.minimum(tl.maximum(full_lo, lo), hi)
    full_hi = tl.maximum(tl.minimum(full_hi, hi), full_lo)
    return lo, full_lo, full_hi, hi


@jit
def _q_ranges(
    k_start, shift, q_len, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
    LEFT: tl.constexpr, RIGHT: tl.constexpr
):
    """Query tiles for the key tile [k_start, k_start + BLOCK_N): the transpose of :func:`_kv_ranges`.

    [lo, hi): queries that may see some key of the tile; [full_lo, full_hi): BLOCK_M-aligned query tiles inside
    q_len that see every key of the tile. Keys past kv_len need no mask here: each dK/dV row depends on its own key
    only, and those rows are never stored.
    """
    k_last = k_start + (BLOCK_N - 1)
    lo = q_len * 0
    full_lo = q_len * 0
    hi = q_len
    full_hi = (q_len // BLOCK_M) * BLOCK_M
    if CAUSAL:  # key j is seen by queries i with i + shift >= j
        lo = (tl.maximum(k_start - shift, 0) // BLOCK_M) * BLOCK_M
        full_lo = ((tl.maximum(k_last - shift, 0) + (BLOCK_M - 1)) // BLOCK_M) * BLOCK_M
    elif RIGHT >= 0:  # ... i + shift + RIGHT >= j
        lo = (tl.maximum(k_start - RIGHT - shift, 0) // BLOCK_M) * BLOCK_M
        full_lo = ((tl.maximum(k_last - RIGHT - shift, 0) + (BLOCK_M - 1)) // BLOCK_M) * BLOCK_M
    if LEFT >= 0:  # ... i + shift - LEFT <= j
        hi = tl.minimum(hi, k_last + LEFT - shift + 1)
        full_hi = tl.minimum(full_hi, (tl.maximum(k_start + LEFT - shift + 1, 0) // BLOCK_M) * BLOCK_M)
    full_lo = tl.minimum(tl.maximum(full_lo, lo), hi)
    full_hi = tl.maximum(tl.minimum(full_hi, hi), full_lo)
    return lo, full_lo, full_hi, hi


@jit
def _fwd_tiles(
    acc, m_i, l_i, q, q_seg, offs_m, offs_n, offs_d, K_head, V_head, KVSEG_row, lo, hi, q_len, kv_len, shift, qk_scale,
    KV_STRIDE: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, LEFT: tl.constexpr, RIGHT: tl.constexpr,
    BAND: tl.constexpr, HAS_SEG: tl.constexpr, PRECISION: tl.constexpr
):
    """Online-softmax update of (acc, m_i, l_i) over the key tiles [lo, hi); BAND: masked tiles (see _visible)."""
    for start_n in range(lo, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        k_idx = start_n + offs_n
        kv_offs = k_idx[:, None] * KV_STRIDE + offs_d[None, :]
        if BAND:
            k_ok = k_idx[:, None] < kv_len
            k = tl.load(K_head + kv_offs, mask=k_ok, other=0.0)
            v = tl.load(V_head + kv_offs, mask=k_ok, other=0.0)
        else:
            k = tl.load(K_head + kv_offs)
            v = tl.load(V_head + kv_offs)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # [BLOCK_M, BLOCK_N], log2 units
        if BAND or HAS_SEG:
            if HAS_SEG:
                kv_seg = tl.load(KVSEG_row + k_idx, mask=k_idx < kv_len, other=0)
                vis = _visible(
                    offs_m[:, None], k_idx[None, :], q_len, kv_len, shift, q_seg[:, None], kv_seg[None, :], CAUSAL,
                    LEFT, RIGHT, BAND, HAS_SEG
                )
            else:
                vis = _visible(
                    offs_m[:, None], k_idx[None, :], q_len, kv_len, shift, 0, 0, CAUSAL, LEFT, RIGHT, BAND, HAS_SEG
                )
            s = tl.where(vis, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)  # nothing visible yet: exp2(-inf - 0) = 0
        else:
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_ref = m_new
        p = tl.math.exp2(s - m_ref[:, None])
        alpha = tl.math.exp2(m_i - m_ref)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=PRECISION)
        m_i = m_new
    return acc, m_i, l_i


@jit
def _fwd_kernel(
    Q, K, V, QSEG, KVSEG, qk_scale, q_len, kv_len, Out, LSE, HQ: tl.constexpr, HKV: tl.constexpr, D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, LEFT: tl.constexpr, RIGHT: tl.constexpr,
    HAS_SEG: tl.constexpr, PRECISION: tl.constexpr
):
    """O [B, Sq, HQ, D] and LSE [B, HQ, Sq] for one query tile of one (batch, head)."""
    pid_m = tl.program_id(0)
    if CAUSAL and LEFT < 0:  # the last query tiles see the most keys: schedule them first (shorter tail)
        pid_m = tl.num_programs(0) - 1 - pid_m
    pid_bh = tl.program_id(1)
    b = pid_bh // HQ
    h = pid_bh % HQ
    hk = h // (HQ // HKV)
    shift = kv_len - q_len
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D)
    row_ok = offs_m < q_len
    q_rows = b.to(tl.int64) * q_len + offs_m  # rows of [B * Sq]
    q_offs = (q_rows * HQ + h)[:, None] * D + offs_d[None, :]
    q = tl.load(Q + q_offs, mask=row_ok[:, None], other=0.0)
    kv_row0 = b.to(tl.int64) * kv_len
    K_head = K + (kv_row0 * HKV + hk) * D  # key j of this (batch, kv head) at K_head + j * HKV * D
    V_head = V + (kv_row0 * HKV + hk) * D
    if HAS_SEG:
        q_seg = tl.load(QSEG + q_rows, mask=row_ok, other=0)
        KVSEG_row = KVSEG + kv_row0
    else:
        q_seg = 0
        KVSEG_row = KVSEG

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D], tl.float32)
    lo, full_lo, full_hi, hi = _kv_ranges(pid_m * BLOCK_M, shift, kv_len, BLOCK_M, BLOCK_N, CAUSAL, LEFT, RIGHT)
    # masked tiles left of the fully visible ones, the fully visible ones, masked tiles right of them
    acc, m_i, l_i = _fwd_tiles(
        acc, m_i, l_i, q, q_seg, offs_m, offs_n, offs_d, K_head, V_head, KVSEG_row, lo, full_lo, q_len, kv_len, shift,
        qk_scale, HKV * D, BLOCK_N, CAUSAL, LEFT, RIGHT, True, HAS_SEG, PRECISION
    )
    acc, m_i, l_i = _fwd_tiles(
        acc, m_i, l_i, q, q_seg, offs_m, offs_n, offs_d, K_head, V_head, KVSEG_row, full_lo, full_hi, q_len, kv_len,
        shift, qk_scale, HKV * D, BLOCK_N, CAUSAL, LEFT, RIGHT, False, HAS_SEG, PRECISION
    )
    acc, m_i, l_i = _fwd_tiles(
        acc, m_i, l_i, q, q_seg, offs_m, offs_n, offs_d, K_head, V_head, KVSEG_row, full_hi, hi, q_len, kv_len, shift,
        qk_scale, HKV * D, BLOCK_N, CAUSAL, LEFT, RIGHT, True, HAS_SEG, PRECISION
    )

    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    out = acc / l_safe[:, None]
    lse = tl.where(empty, float("-inf"), (m_i + tl.math.log2(l_safe)) * _LN2)
    tl.store(Out + q_offs, out.to(Out.dtype.element_ty), mask=row_ok[:, None])
    tl.store(LSE + pid_bh.to(tl.int64) * q_len + offs_m, lse, mask=row_ok)


@jit
def _delta_kernel(Out, DO, q_len, DELTA, HQ: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr):
    """DELTA [B, HQ, Sq] = rowsum(dO * O) in float32."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // HQ
    h = pid_bh % HQ
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, D)
    row_ok = offs_m < q_len
    offs = ((b.to(tl.int64) * q_len + offs_m) * HQ + h)[:, None] * D + offs_d[None, :]
    o = tl.load(Out + offs, mask=row_ok[:, None], other=0.0).to(tl.float32)
    do = tl.load(DO + offs, mask=row_ok[:, None], other=0.0).to(tl.float32)
    tl.store(DELTA + pid_bh.to(tl.int64) * q_len + offs_m, tl.sum(o * do, 1), mask=row_ok)


@jit
def _dkv_tiles(
    dk, dv, k, v, kv_seg, offs_m, offs_n, offs_d, Q_head, DO_head, LSE_row, DELTA_row, QSEG_row, lo, hi, q_len, kv_len,
    shift, qk_scale, Q_STRIDE: tl.constexpr, BLOCK_M: tl.constexpr, CAUSAL: tl.constexpr, LEFT: tl.constexpr,
    RIGHT: tl.constexpr, BAND: tl.constexpr, HAS_SEG: tl.constexpr, PRECISION: tl.constexpr
):
    """dK/dV accumulation over the query tiles [lo, hi) of one query head (transposed tiles: keys are rows)."""
    for start_m in range(lo, hi, BLOCK_M):
        start_m = tl.multiple_of(start_m, BLOCK_M)
        q_idx = start_m + offs_m
        q_offs = q_idx[:, None] * Q_STRIDE + offs_d[None, :]
        if BAND:
            q_ok = q_idx < q_len
            q = tl.load(Q_head + q_offs, mask=q_ok[:, None], other=0.0)
            do = tl.load(DO_head + q_offs, mask=q_ok[:, None], other=0.0)
            lse = tl.load(LSE_row + q_idx, mask=q_ok, other=0.0)
            delta = tl.load(DELTA_row + q_idx, mask=q_ok, other=0.0)
        else:
            q = tl.load(Q_head + q_offs)
            do = tl.load(DO_head + q_offs)
            lse = tl.load(LSE_row + q_idx)
            delta = tl.load(DELTA_row + q_idx)
        s_t = tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale  # [BLOCK_N, BLOCK_M]
        p_t = tl.math.exp2(s_t - lse[None, :] * _LOG2E)  # rows that see nothing: inf here, masked to 0 below
        if BAND or HAS_SEG:
            if HAS_SEG:
                q_seg = tl.load(QSEG_row + q_idx, mask=q_idx < q_len, other=0)
                vis = _visible(
                    q_idx[None, :], offs_n[:, None], q_len, kv_len, shift, q_seg[None, :], kv_seg[:, None], CAUSAL,
                    LEFT, RIGHT, BAND, HAS_SEG
                )
            else:
                vis = _visible(
                    q_idx[None, :], offs_n[:, None], q_len, kv_len, shift, 0, 0, CAUSAL, LEFT, RIGHT, BAND, HAS_SEG
                )
            p_t = tl.where(vis, p_t, 0.0)
        dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        ds_t = p_t * (dp_t - delta[None, :])
        dk = tl.dot(ds_t.to(q.dtype), q, dk, input_precision=PRECISION)
    return dk, dv


@jit
def _dkv_kernel(
    Q, K, V, DO, LSE, DELTA, QSEG, KVSEG, scale, qk_scale, q_len, kv_len, DK, DV, HQ: tl.constexpr, HKV: tl.constexpr,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, LEFT: tl.constexpr,
    RIGHT: tl.constexpr, HAS_SEG: tl.constexpr, PRECISION: tl.constexpr
):
    """DK, DV [B, Skv, HKV, D] for one key tile of one (batch, kv head), summed over its GQA group."""
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // HKV
    hk = pid_bh % HKV
    shift = kv_len - q_len
    k_start = pid_n * BLOCK_N
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = k_start + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D)
    col_ok = offs_n < kv_len
    kv_offs = ((b.to(tl.int64) * kv_len + offs_n) * HKV + hk)[:, None] * D + offs_d[None, :]
    k = tl.load(K + kv_offs, mask=col_ok[:, None], other=0.0)
    v = tl.load(V + kv_offs, mask=col_ok[:, None], other=0.0)
    q_row0 = b.to(tl.int64) * q_len
    if HAS_SEG:
        kv_seg = tl.load(KVSEG + b.to(tl.int64) * kv_len + offs_n, mask=col_ok, other=0)
        QSEG_row = QSEG + q_row0
    else:
        kv_seg = 0
        QSEG_row = QSEG

    dk = tl.zeros([BLOCK_N, D], tl.float32)
    dv = tl.zeros([BLOCK_N, D], tl.float32)
    lo, full_lo, full_hi, hi = _q_ranges(k_start, shift, q_len, BLOCK_M, BLOCK_N, CAUSAL, LEFT, RIGHT)
    for g in range(HQ // HKV):  # the query heads sharing this kv head
        h = hk * (HQ // HKV) + g
        Q_head = Q + (q_row0 * HQ + h) * D  # query i of this (batch, head) at Q_head + i * HQ * D
        DO_head = DO + (q_row0 * HQ + h) * D
        LSE_row = LSE + (b.to(tl.int64) * HQ + h) * q_len
        DELTA_row = DELTA + (b.to(tl.int64) * HQ + h) * q_len
        dk, dv = _dkv_tiles(
            dk, dv, k, v, kv_seg, offs_m, offs_n, offs_d, Q_head, DO_head, LSE_row, DELTA_row, QSEG_row, lo, full_lo,
            q_len, kv_len, shift, qk_scale, HQ * D, BLOCK_M, CAUSAL, LEFT, RIGHT, True, HAS_SEG, PRECISION
        )
        dk, dv = _dkv_tiles(
            dk, dv, k, v, kv_seg, offs_m, offs_n, offs_d, Q_head, DO_head, LSE_row, DELTA_row, QSEG_row, full_lo,
            full_hi, q_len, kv_len, shift, qk_scale, HQ * D, BLOCK_M, CAUSAL, LEFT, RIGHT, False, HAS_SEG, PRECISION
        )
        dk, dv = _dkv_tiles(
            dk, dv, k, v, kv_seg, offs_m, offs_n, offs_d, Q_head, DO_head, LSE_row, DELTA_row, QSEG_row, full_hi, hi,
            q_len, kv_len, shift, qk_scale, HQ * D, BLOCK_M, CAUSAL, LEFT, RIGHT, True, HAS_SEG, PRECISION
        )
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=col_ok[:, None])
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=col_ok[:, None])


@jit
def _dq_tiles(
    dq, q, do, lse2, delta, q_seg, offs_m, offs_n, offs_d, K_head, V_head, KVSEG_row, lo, hi, q_len, kv_len, shift,
    qk_scale, KV_STRIDE: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, LEFT: tl.constexpr,
    RIGHT: tl.constexpr, BAND: tl.constexpr, HAS_SEG: tl.constexpr, PRECISION: tl.constexpr
):
    """dQ accumulation over the key tiles [lo, hi)."""
    for start_n in range(lo, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        k_idx = start_n + offs_n
        kv_offs = k_idx[:, None] * KV_STRIDE + offs_d[None, :]
        if BAND:
            k_ok = k_idx[:, None] < kv_len
            k = tl.load(K_head + kv_offs, mask=k_ok, other=0.0)
            v = tl.load(V_head + kv_offs, mask=k_ok, other=0.0)
        else:
            k = tl.load(K_head + kv_offs)
            v = tl.load(V_head + kv_offs)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        p = tl.math.exp2(s - lse2[:, None])
        if BAND or HAS_SEG:
            if HAS_SEG:
                kv_seg = tl.load(KVSEG_row + k_idx, mask=k_idx < kv_len, other=0)
                vis = _visible(
                    offs_m[:, None], k_idx[None, :], q_len, kv_len, shift, q_seg[:, None], kv_seg[None, :], CAUSAL,
                    LEFT, RIGHT, BAND, HAS_SEG
                )
            else:
                vis = _visible(
                    offs_m[:, None], k_idx[None, :], q_len, kv_len, shift, 0, 0, CAUSAL, LEFT, RIGHT, BAND, HAS_SEG
                )
            p = tl.where(vis, p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=PRECISION)
    return dq


@jit
def _dq_kernel(
    Q, K, V, DO, LSE, DELTA, QSEG, KVSEG, scale, qk_scale, q_len, kv_len, DQ, HQ: tl.constexpr, HKV: tl.constexpr,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, LEFT: tl.constexpr,
    RIGHT: tl.constexpr, HAS_SEG: tl.constexpr, PRECISION: tl.constexpr
):
    """DQ [B, Sq, HQ, D] for one query tile of one (batch, head)."""
    pid_m = tl.program_id(0)
    if CAUSAL and LEFT < 0:  # the last query tiles see the most keys: schedule them first (shorter tail)
        pid_m = tl.num_programs(0) - 1 - pid_m
    pid_bh = tl.program_id(1)
    b = pid_bh // HQ
    h = pid_bh % HQ
    hk = h // (HQ // HKV)
    shift = kv_len - q_len
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D)
    row_ok = offs_m < q_len
    q_rows = b.to(tl.int64) * q_len + offs_m
    q_offs = (q_rows * HQ + h)[:, None] * D + offs_d[None, :]
    q = tl.load(Q + q_offs, mask=row_ok[:, None], other=0.0)
    do = tl.load(DO + q_offs, mask=row_ok[:, None], other=0.0)
    row_stats = pid_bh.to(tl.int64) * q_len + offs_m
    lse = tl.load(LSE + row_stats, mask=row_ok, other=0.0)
    lse2 = lse * _LOG2E  # -inf for rows that see nothing: P = inf there, always masked to 0 (never in full tiles)
    delta = tl.load(DELTA + row_stats, mask=row_ok, other=0.0)
    kv_row0 = b.to(tl.int64) * kv_len
    K_head = K + (kv_row0 * HKV + hk) * D
    V_head = V + (kv_row0 * HKV + hk) * D
    if HAS_SEG:
        q_seg = tl.load(QSEG + q_rows, mask=row_ok, other=0)
        KVSEG_row = KVSEG + kv_row0
    else:
        q_seg = 0
        KVSEG_row = KVSEG

    dq = tl.zeros([BLOCK_M, D], tl.float32)
    lo, full_lo, full_hi, hi = _kv_ranges(pid_m * BLOCK_M, shift, kv_len, BLOCK_M, BLOCK_N, CAUSAL, LEFT, RIGHT)
    dq = _dq_tiles(
        dq, q, do, lse2, delta, q_seg, offs_m, offs_n, offs_d, K_head, V_head, KVSEG_row, lo, full_lo, q_len, kv_len,
        shift, qk_scale, HKV * D, BLOCK_N, CAUSAL, LEFT, RIGHT, True, HAS_SEG, PRECISION
    )
    dq = _dq_tiles(
        dq, q, do, lse2, delta, q_seg, offs_m, offs_n, offs_d, K_head, V_head, KVSEG_row, full_lo, full_hi, q_len,
        kv_len, shift, qk_scale, HKV * D, BLOCK_N, CAUSAL, LEFT, RIGHT, False, HAS_SEG, PRECISION
    )
    dq = _dq_tiles(
        dq, q, do, lse2, delta, q_seg, offs_m, offs_n, offs_d, K_head, V_head, KVSEG_row, full_hi, hi, q_len, kv_len,
        shift, qk_scale, HKV * D, BLOCK_N, CAUSAL, LEFT, RIGHT, True, HAS_SEG, PRECISION
    )
    tl.store(DQ + q_offs, (dq * scale).to(DQ.dtype.element_ty), mask=row_ok[:, None])


# fmt: on

# ===============================================================================================================
# Launch configurations: the autotune table
# ===============================================================================================================


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """Launch parameters of one kernel: tile rows (queries) x tile columns (keys), warps, pipeline stages."""

    block_m: int
    block_n: int
    num_warps: int
    num_stages: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str = "config") -> "KernelConfig":
        unknown = set(d) - {"BLOCK_M", "BLOCK_N", "num_warps", "num_stages"}
        if unknown:
            raise ValueError(
                f"{where}: unknown keys {sorted(unknown)} (expected BLOCK_M, BLOCK_N, num_warps, num_stages)"
            )
        missing = {"BLOCK_M", "BLOCK_N", "num_warps", "num_stages"} - set(d)
        if missing:
            raise ValueError(f"{where}: missing keys {sorted(missing)}")
        for key in ("BLOCK_M", "BLOCK_N", "num_warps", "num_stages"):
            if isinstance(d[key], bool) or not isinstance(d[key], int | np.integer):
                raise ValueError(f"{where}.{key}: expected an int, got {d[key]!r}")
        out = cls(int(d["BLOCK_M"]), int(d["BLOCK_N"]), int(d["num_warps"]), int(d["num_stages"]))
        out.check(where)
        return out

    def to_json(self) -> dict[str, int]:
        return dict(BLOCK_M=self.block_m, BLOCK_N=self.block_n, num_warps=self.num_warps, num_stages=self.num_stages)

    def check(self, where: str) -> None:
        for name, value in (("BLOCK_M", self.block_m), ("BLOCK_N", self.block_n)):
            if value < 16 or value & (value - 1):
                raise ValueError(f"{where}.{name}: expected a power of two >= 16, got {value}")
        if self.num_warps not in (1, 2, 4, 8, 16):
            raise ValueError(f"{where}.num_warps: expected 1, 2, 4, 8 or 16, got {self.num_warps}")
        if self.num_stages < 1:
            raise ValueError(f"{where}.num_stages: expected a positive int, got {self.num_stages}")


@dataclasses.dataclass(frozen=True)
class LaunchConfig:
    """The three kernels' launch parameters (`fwd`, `bwd_dkv`, `bwd_dq` in the table) and where they came from.

    `fwd` and `bwd_dq`: BLOCK_M = query tile, BLOCK_N = key tile. `bwd_dkv`: BLOCK_N = the key tile each program
    owns, BLOCK_M = the query tile it loops over. The delta preprocess kernel uses `bwd_dq`'s BLOCK_M.
    """

    fwd: KernelConfig
    bwd_dkv: KernelConfig
    bwd_dq: KernelConfig
    source: str = ""

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str = "config") -> "LaunchConfig":
        parts = {name: KernelConfig.from_json(d[name], f"{where}.{name}") for name in KERNELS if name in d}
        missing = set(KERNELS) - set(parts)
        if missing:
            raise ValueError(f"{where}: missing sections {sorted(missing)}")
        return cls(**parts, source=str(d.get("source", "")))

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name).to_json() for name in KERNELS}

    def merged(self, override: Mapping[str, Any], where: str = "config") -> "LaunchConfig":
        """This config with some kernels' fields replaced: `{"fwd": {"BLOCK_M": 64}, ...}`."""
        unknown = set(override) - set(KERNELS) - {"source"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)} (expected some of {list(KERNELS)})")
        parts = {}
        for name in KERNELS:
            base = getattr(self, name).to_json()
            extra = override.get(name, {})
            if not isinstance(extra, Mapping):
                raise ValueError(f"{where}.{name}: expected a mapping of launch parameters, got {extra!r}")
            parts[name] = KernelConfig.from_json({**base, **extra}, f"{where}.{name}")
        return LaunchConfig(**parts, source=str(override.get("source", "user config")))

    def clamped(self, q_len: int, kv_len: int) -> "LaunchConfig":
        """Tiles no larger than the (power-of-two rounded, >= 16) sequences they cover."""

        def fit(block: int, length: int) -> int:
            return min(block, max(16, triton.next_power_of_2(length)))

        parts = {
            name: dataclasses.replace(c, block_m=fit(c.block_m, q_len), block_n=fit(c.block_n, kv_len))
            for name, c in ((n, getattr(self, n)) for n in KERNELS)
        }
        return LaunchConfig(**parts, source=self.source)


def seq_bucket(q_len: int, kv_len: int, bounds: tuple[int, ...] = (512, 2048, 8192, 32768)) -> str:
    """The table's sequence class of a call: `"<=N"` for the smallest bound N >= max(q_len, kv_len), else `">N"`."""
    n = max(q_len, kv_len)
    for bound in bounds:
        if n <= bound:
            return f"<={bound}"
    return f">{bounds[-1]}"


def load_table(path: str | pathlib.Path | None = None) -> dict[str, Any]:
    """The parsed launch table (`autotune.json` beside this module unless `path` is given)."""
    return launch_table.load_table(path or TABLE_PATH)


@functools.cache
def _default_table() -> dict[str, Any]:
    return load_table()


def lookup_config(
    *,
    head_dim: int,
    causal: bool,
    dtype: Any,
    q_len: int,
    kv_len: int,
    device: str | None = None,
    table: Mapping[str, Any] | None = None,
) -> LaunchConfig:
    """The table entry for one call's shape class, or the fallback for its device class.

    An entry matches when each of its fields `device`, `head_dim`, `causal`, `dtype`, `seq` (see :func:`seq_bucket`)
    is absent, `"*"`, equal to the call's value, or a list containing it. `device` also accepts the classes
    `"gpu"` (any GPU) and `"interpret"`. Among matches the most specific wins: a named device counts 10, every
    other field given counts 1; ties go to the earlier entry. No match: the table's `defaults["gpu"]` or
    `defaults["interpret"]`. `head_dim` is the kernel's (power-of-two padded) head dim.
    """
    table = _default_table() if table is None else table
    device = device_key() if device is None else device
    dtype_name = jnp.dtype(dtype).name
    bounds = tuple(table.get("seq_buckets", (512, 2048, 8192, 32768)))
    call = dict(head_dim=head_dim, causal=bool(causal), dtype=dtype_name, seq=seq_bucket(q_len, kv_len, bounds))
    device_class = "interpret" if device == "interpret" else "gpu"
    best, best_score = None, -1
    for i, entry in enumerate(table["entries"]):
        want_device = entry.get("device", "*")
        names = want_device if isinstance(want_device, list) else [want_device]
        if device in names:
            score = 10
        elif device_class in names or "*" in names:
            score = 0
        else:
            continue
        if not all(field_matches(call[k], entry.get(k, "*")) for k in call):
            continue
        score += sum(entry.get(k, "*") != "*" for k in call)
        if score > best_score:
            best, best_score = (i, entry), score
    if best is not None:
        i, entry = best
        return LaunchConfig.from_json(entry, f"autotune.json entries[{i}]")
    default = table.get("defaults", {}).get(device_class)
    if default is None:
        raise ValueError(f"autotune.json: no entry matches {device} {call} and there is no defaults.{device_class}")
    return LaunchConfig.from_json(default, f"autotune.json defaults.{device_class}")


# ===============================================================================================================
# Launches
# ===============================================================================================================


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


def resolve_config(
    config: LaunchConfig | Mapping[str, Any] | None,
    *,
    head_dim: int,
    causal: bool,
    dtype: Any,
    q_len: int,
    kv_len: int,
    backend: str = "auto",
) -> LaunchConfig:
    """The launch configuration a call uses: `config` (a LaunchConfig, or a partial mapping merged over the table
    entry) or the table entry, with tiles clamped to the sequence lengths."""
    if isinstance(config, LaunchConfig):
        for name in KERNELS:
            getattr(config, name).check(f"config.{name}")
        chosen = config
    elif config is None or isinstance(config, Mapping):
        chosen = lookup_config(
            head_dim=head_dim, causal=causal, dtype=dtype, q_len=q_len, kv_len=kv_len, device=device_key(backend)
        )
        if config:
            chosen = chosen.merged(config)
    else:
        raise ValueError(f"config: expected None, a LaunchConfig or a mapping, got {type(config).__name__}")
    return chosen.clamped(q_len, kv_len)


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
