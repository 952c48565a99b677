"""The Triton kernels of the fused attention (FlashAttention-2 forward, delta, dK/dV and dQ), written once with
`kernels.triton_call.jit` so the same source runs on GPU (jax-triton) and in Triton's interpreter on CPU.

Launches, the custom VJP and the public API: `kernels.attention.triton`; shapes, masking, block skipping and the
algorithm: `kernels/README.md`.
"""

import triton.language as tl

from kernels.triton_call import jit

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
