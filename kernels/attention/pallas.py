"""FlashAttention-2-style fused attention in Pallas: forward, dK/dV and dQ kernels under one `jax.custom_vjp`.

Semantics are `kernels.attention.reference`'s (`[batch, seq, heads, head_dim]`, GQA/MQA, bottom-right causal when
Sq != Skv, sliding window, q/kv segment ids, fully masked rows -> zeros and zero gradients); the tile masks come
from `reference.block_mask`, so both sides share one definition. Online softmax in float32 (exp2, `-inf`-safe),
logsumexp residual, FlashAttention-2 backward (delta in XLA, a dK/dV kernel summing each GQA group, a dQ kernel);
block skipping under causal/window; ragged lengths and odd head dims zero-padded in the wrapper (exact).

CPU: interpret mode (`interpret=None` means True there). GPU: the Pallas Triton backend (`num_warps`/`num_stages`
via compiler params). Not Mosaic GPU or Mosaic TPU as written. Algorithm and lowering notes: `kernels/README.md`.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from kernels.attention.reference import Window, block_mask, validate

__all__ = ["attention"]

LOG2E = math.log2(math.e)
LN2 = math.log(2.0)


@dataclasses.dataclass(frozen=True)
class _Config:
    """Static description of one call (hashable: it is a custom_vjp nondiff argument)."""

    causal: bool
    window: Window
    scale: float
    q_len: int  # real lengths; the arrays reaching the kernels are padded
    kv_len: int
    group: int  # Hq // Hkv
    block_q: int
    block_kv: int
    block_q_bwd: int
    block_kv_bwd: int
    has_segments: bool
    num_warps: int | None
    num_stages: int | None
    interpret: bool

    @property
    def offset(self) -> int:  # bottom-right alignment: query i sits at key position i + offset
        return self.kv_len - self.q_len

    @property
    def right(self) -> int | None:  # effective right reach of the band (causal -> 0)
        r = None if self.window is None else self.window[1]
        return 0 if self.causal else r

    @property
    def left(self) -> int | None:
        return None if self.window is None else self.window[0]


# --------------------------------------------------------------------------------------------- helpers
def _dot(a, b, contract_a: int, contract_b: int):
    """2-D matmul contracting a's axis `contract_a` with b's `contract_b`, float32 accumulation."""
    return lax.dot_general(a, b, (((contract_a,), (contract_b,)), ((), ())), preferred_element_type=jnp.float32)


def _iota(n: int):
    return lax.broadcasted_iota(jnp.int32, (n,), 0)


def _tile_mask(cfg: _Config, q_start, block_q: int, kv_start, block_kv: int, q_seg, kv_seg, kv_padded: bool):
    """bool [block_q, block_kv] for the tile at (q_start, kv_start), or None when nothing is masked."""
    q_pos = q_start + _iota(block_q) + cfg.offset
    kv_pos = kv_start + _iota(block_kv)
    m = block_mask(q_pos, kv_pos, q_seg, kv_seg, causal=cfg.causal, window=cfg.window)
    if kv_padded:
        valid = (kv_pos < cfg.kv_len)[None, :]
        m = valid if m is None else jnp.logical_and(m, valid)
    return m


def _div(x, d: int):
    """x // d for a non-negative traced int32 (lax.div lowers everywhere; jnp's floor division does not)."""
    return lax.div(x, jnp.int32(d))


def _kv_tile_range(cfg: _Config, q_start, block_q: int, block_kv: int):
    """[lo, hi) of the kv tiles that the query tile [q_start, q_start + block_q) can see."""
    lo, hi = 0, pl.cdiv(cfg.kv_len, block_kv)
    first = q_start + cfg.offset  # key-axis position of the tile's first query
    if cfg.left is not None:
        lo = _div(jnp.maximum(first - cfg.left, 0), block_kv)
    if cfg.right is not None:
        last_key = first + (block_q - 1) + cfg.right
        hi = jnp.minimum(hi, _div(jnp.maximum(last_key + block_kv, 0), block_kv))
    return lo, hi


def _q_tile_range(cfg: _Config, kv_start, block_kv: int, block_q: int):
    """[lo, hi) of the query tiles that can see the kv tile [kv_start, kv_start + block_kv)."""
    lo, hi = 0, pl.cdiv(cfg.q_len, block_q)
    if cfg.right is not None:  # key j needs a query with i + offset >= j - right
        lo = _div(jnp.maximum(kv_start - cfg.right - cfg.offset, 0), block_q)
    if cfg.left is not None:  # ... and one with i + offset <= j + left
        last_query = kv_start + (block_kv - 1) + cfg.left - cfg.offset
        hi = jnp.minimum(hi, _div(jnp.maximum(last_query + block_q, 0), block_q))
    return lo, hi


def _compiler_params(cfg: _Config, head_dim: int):
    if cfg.interpret or jax.default_backend() != "gpu":
        return None
    from jax.experimental.pallas import triton as pl_triton

    num_warps = cfg.num_warps if cfg.num_warps is not None else (4 if head_dim <= 64 else 8)
    return pl_triton.CompilerParams(num_warps=num_warps, num_stages=cfg.num_stages)


# --------------------------------------------------------------------------------------------- forward
def _fwd_kernel(*refs, cfg: _Config, kv_padded: bool):
    if cfg.has_segments:
        q_ref, k_ref, v_ref, qseg_ref, kvseg_ref, o_ref, lse_ref = refs
    else:
        (q_ref, k_ref, v_ref, o_ref, lse_ref), qseg_ref, kvseg_ref = refs, None, None
    block_q, block_kv = cfg.block_q, cfg.block_kv
    q_start = pl.program_id(0) * block_q
    q = q_ref[...]
    q_seg = None if qseg_ref is None else qseg_ref[...]
    c = cfg.scale * LOG2E

    def body(j, carry):
        acc, m_prev, l_prev = carry
        kv_start = pl.multiple_of(j * block_kv, block_kv)
        k = k_ref[pl.ds(kv_start, block_kv), :]
        v = v_ref[pl.ds(kv_start, block_kv), :]
        s = _dot(q, k, 1, 1) * c  # [block_q, block_kv], log2 units
        kv_seg = None if kvseg_ref is None else kvseg_ref[pl.ds(kv_start, block_kv)]
        mask = _tile_mask(cfg, q_start, block_q, kv_start, block_kv, q_seg, kv_seg, kv_padded)
        if mask is not None:
            s = jnp.where(mask, s, -jnp.inf)
        m_new = jnp.maximum(m_prev, jnp.max(s, axis=1))
        m_ref = jnp.where(m_new == -jnp.inf, 0.0, m_new)  # rows with nothing visible yet: exp2(-inf - 0) = 0
        p = jnp.exp2(s - m_ref[:, None])
        alpha = jnp.exp2(m_prev - m_ref)
        l_new = alpha * l_prev + jnp.sum(p, axis=1)
        acc = acc * alpha[:, None] + _dot(p.astype(v.dtype), v, 1, 0)
        return acc, m_new, l_new

    lo, hi = _kv_tile_range(cfg, q_start, block_q, block_kv)
    init = (
        jnp.zeros((block_q, q.shape[-1]), jnp.float32),
        jnp.full((block_q,), -jnp.inf, jnp.float32),
        jnp.zeros((block_q,), jnp.float32),
    )
    acc, row_max, row_sum = lax.fori_loop(lo, hi, body, init)
    empty = row_sum == 0.0
    row_sum = jnp.where(empty, 1.0, row_sum)
    o_ref[...] = (acc / row_sum[:, None]).astype(o_ref.dtype)
    lse_ref[...] = jnp.where(empty, -jnp.inf, (row_max + jnp.log2(row_sum)) * LN2)


def _fwd_call(q, k, v, q_seg, kv_seg, cfg: _Config):
    batch, q_pad, q_heads, head_dim = q.shape
    kv_pad = k.shape[1]
    bq, g = cfg.block_q, cfg.group
    q_spec = pl.BlockSpec((None, bq, None, head_dim), lambda i, b, h: (b, i, h, 0))
    kv_spec = pl.BlockSpec((None, kv_pad, None, head_dim), lambda i, b, h: (b, 0, _div(h, g), 0))
    in_specs, args = [q_spec, kv_spec, kv_spec], [q, k, v]
    if cfg.has_segments:
        in_specs += [
            pl.BlockSpec((None, bq), lambda i, b, h: (b, i)),
            pl.BlockSpec((None, kv_pad), lambda i, b, h: (b, 0)),
        ]
        args += [q_seg, kv_seg]
    kernel = functools.partial(_fwd_kernel, cfg=cfg, kv_padded=kv_pad > cfg.kv_len)
    return pl.pallas_call(
        kernel,
        grid=(q_pad // bq, batch, q_heads),
        in_specs=in_specs,
        out_specs=[q_spec, pl.BlockSpec((None, None, bq), lambda i, b, h: (b, h, i))],
        out_shape=[
            jax.ShapeDtypeStruct(q.shape, q.dtype),
            jax.ShapeDtypeStruct((batch, q_heads, q_pad), jnp.float32),
        ],
        compiler_params=_compiler_params(cfg, head_dim),
        interpret=cfg.interpret,
        name="flash_attention_fwd",
    )(*args)


# --------------------------------------------------------------------------------------------- backward
def _dkv_kernel(*refs, cfg: _Config, kv_padded: bool):
    if cfg.has_segments:
        q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, qseg_ref, kvseg_ref, dk_ref, dv_ref = refs
    else:
        (q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, dk_ref, dv_ref), qseg_ref, kvseg_ref = refs, None, None
    block_q, block_kv = cfg.block_q_bwd, cfg.block_kv_bwd
    kv_start = pl.program_id(0) * block_kv
    k = k_ref[...]
    v = v_ref[...]
    kv_seg = None if kvseg_ref is None else kvseg_ref[...]
    c = cfg.scale * LOG2E
    lo, hi = _q_tile_range(cfg, kv_start, block_kv, block_q)

    def head_body(g, carry):  # query heads g of this kv head's group
        def q_body(i, carry):
            dk, dv = carry
            q_start = pl.multiple_of(i * block_q, block_q)
            rows = pl.ds(q_start, block_q)
            q = q_ref[rows, g, :]
            do = do_ref[rows, g, :]
            lse2 = lse_ref[g, rows] * LOG2E
            delta = delta_ref[g, rows]
            s = _dot(q, k, 1, 1) * c
            p = jnp.exp2(s - lse2[:, None])  # empty rows: lse = -inf -> inf here, masked to 0 below
            q_seg = None if qseg_ref is None else qseg_ref[rows]
            mask = _tile_mask(cfg, q_start, block_q, kv_start, block_kv, q_seg, kv_seg, kv_padded)
            if mask is not None:
                p = jnp.where(mask, p, 0.0)
            dv = dv + _dot(p.astype(do.dtype), do, 0, 0)
            dp = _dot(do, v, 1, 1)
            ds = p * (dp - delta[:, None])
            dk = dk + _dot(ds.astype(q.dtype), q, 0, 0)
            return dk, dv

        return lax.fori_loop(lo, hi, q_body, carry)

    zeros = jnp.zeros((block_kv, k.shape[-1]), jnp.float32)
    dk, dv = lax.fori_loop(0, cfg.group, head_body, (zeros, zeros))
    dk_ref[...] = (dk * cfg.scale).astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)


def _dq_kernel(*refs, cfg: _Config, kv_padded: bool):
    if cfg.has_segments:
        q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, qseg_ref, kvseg_ref, dq_ref = refs
    else:
        (q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, dq_ref), qseg_ref, kvseg_ref = refs, None, None
    block_q, block_kv = cfg.block_q_bwd, cfg.block_kv_bwd
    q_start = pl.program_id(0) * block_q
    q = q_ref[...]
    do = do_ref[...]
    lse2 = lse_ref[...] * LOG2E
    delta = delta_ref[...]
    q_seg = None if qseg_ref is None else qseg_ref[...]
    c = cfg.scale * LOG2E

    def body(j, dq):
        kv_start = pl.multiple_of(j * block_kv, block_kv)
        cols = pl.ds(kv_start, block_kv)
        k = k_ref[cols, :]
        v = v_ref[cols, :]
        s = _dot(q, k, 1, 1) * c
        p = jnp.exp2(s - lse2[:, None])
        kv_seg = None if kvseg_ref is None else kvseg_ref[cols]
        mask = _tile_mask(cfg, q_start, block_q, kv_start, block_kv, q_seg, kv_seg, kv_padded)
        if mask is not None:
            p = jnp.where(mask, p, 0.0)
        dp = _dot(do, v, 1, 1)
        ds = p * (dp - delta[:, None])
        return dq + _dot(ds.astype(k.dtype), k, 1, 0)

    lo, hi = _kv_tile_range(cfg, q_start, block_q, block_kv)
    dq = lax.fori_loop(lo, hi, body, jnp.zeros(q.shape, jnp.float32))
    dq_ref[...] = (dq * cfg.scale).astype(dq_ref.dtype)


def _bwd_calls(q, k, v, q_seg, kv_seg, o, lse, do, cfg: _Config):
    batch, q_pad, q_heads, head_dim = q.shape
    kv_pad, kv_heads = k.shape[1], k.shape[2]
    bq, bk, g = cfg.block_q_bwd, cfg.block_kv_bwd, cfg.group
    kv_padded = kv_pad > cfg.kv_len
    params = _compiler_params(cfg, head_dim)
    # delta_i = rowsum(dO_i * O_i): elementwise + reduction, fused by XLA (no matmul, so no TF32 on GPU)
    delta = jnp.sum(o.astype(jnp.float32) * do.astype(jnp.float32), axis=-1).transpose(0, 2, 1)  # [B, Hq, Sq]

    # dK, dV: one kv tile per program, all query heads of its group and all query tiles in the kernel
    q_group_spec = pl.BlockSpec((None, q_pad, g, head_dim), lambda j, b, h: (b, 0, h, 0))
    row_group_spec = pl.BlockSpec((None, g, q_pad), lambda j, b, h: (b, h, 0))
    kv_tile_spec = pl.BlockSpec((None, bk, None, head_dim), lambda j, b, h: (b, j, h, 0))
    in_specs = [q_group_spec, kv_tile_spec, kv_tile_spec, q_group_spec, row_group_spec, row_group_spec]
    args = [q, k, v, do, lse, delta]
    if cfg.has_segments:
        in_specs += [
            pl.BlockSpec((None, q_pad), lambda j, b, h: (b, 0)),
            pl.BlockSpec((None, bk), lambda j, b, h: (b, j)),
        ]
        args += [q_seg, kv_seg]
    dk, dv = pl.pallas_call(
        functools.partial(_dkv_kernel, cfg=cfg, kv_padded=kv_padded),
        grid=(kv_pad // bk, batch, kv_heads),
        in_specs=in_specs,
        out_specs=[kv_tile_spec, kv_tile_spec],
        out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
        compiler_params=params,
        interpret=cfg.interpret,
        name="flash_attention_dkv",
    )(*args)

    # dQ: one query tile per program, loops over the kv tiles of its kv head
    q_tile_spec = pl.BlockSpec((None, bq, None, head_dim), lambda i, b, h: (b, i, h, 0))
    kv_full_spec = pl.BlockSpec((None, kv_pad, None, head_dim), lambda i, b, h: (b, 0, _div(h, g), 0))
    row_spec = pl.BlockSpec((None, None, bq), lambda i, b, h: (b, h, i))
    in_specs = [q_tile_spec, kv_full_spec, kv_full_spec, q_tile_spec, row_spec, row_spec]
    args = [q, k, v, do, lse, delta]
    if cfg.has_segments:
        in_specs += [
            pl.BlockSpec((None, bq), lambda i, b, h: (b, i)),
            pl.BlockSpec((None, kv_pad), lambda i, b, h: (b, 0)),
        ]
        args += [q_seg, kv_seg]
    dq = pl.pallas_call(
        functools.partial(_dq_kernel, cfg=cfg, kv_padded=kv_padded),
        grid=(q_pad // bq, batch, q_heads),
        in_specs=in_specs,
        out_specs=q_tile_spec,
        out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
        compiler_params=params,
        interpret=cfg.interpret,
        name="flash_attention_dq",
    )(*args)
    return dq, dk, dv


# --------------------------------------------------------------------------------------------- custom_vjp
@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _flash(q, k, v, q_seg, kv_seg, cfg: _Config):
    return _fwd_call(q, k, v, q_seg, kv_seg, cfg)[0]


def _flash_fwd(q, k, v, q_seg, kv_seg, cfg: _Config):
    o, lse = _fwd_call(q, k, v, q_seg, kv_seg, cfg)
    return o, (q, k, v, q_seg, kv_seg, o, lse)


def _flash_bwd(cfg: _Config, res, do):
    q, k, v, q_seg, kv_seg, o, lse = res
    dq, dk, dv = _bwd_calls(q, k, v, q_seg, kv_seg, o, lse, do, cfg)
    return dq, dk, dv, None, None


_flash.defvjp(_flash_fwd, _flash_bwd)


# --------------------------------------------------------------------------------------------- public API
def _block(name: str, requested: int | None, default: int, length: int) -> int:
    if requested is None:
        requested = default
    if isinstance(requested, bool) or not isinstance(requested, int) or requested <= 0:
        raise ValueError(f"{name}: expected a positive int, got {requested!r}")
    return min(requested, max(16, pl.next_power_of_2(length)))


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


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
    block_q: int | None = None,
    block_kv: int | None = None,
    block_q_bwd: int | None = None,
    block_kv_bwd: int | None = None,
    num_warps: int | None = None,
    num_stages: int | None = 2,
    interpret: bool | None = None,
) -> jax.Array:
    """Fused attention, differentiable in q, k, v (custom VJP with FlashAttention-2 backward kernels).

    q: [batch, q_len, q_heads, head_dim]; k, v: [batch, kv_len, kv_heads, head_dim] with q_heads % kv_heads == 0;
    all float32, bfloat16 or float16 (one dtype). q_segment_ids [batch, q_len] / kv_segment_ids [batch, kv_len]:
    int, given together. causal (bottom-right aligned when q_len != kv_len), window=(left, right) as in
    `reference.attention`; scale defaults to 1/sqrt(head_dim). Returns [batch, q_len, q_heads, head_dim] in
    q.dtype; rows that see no key are zeros.

    Tiling: block_q/block_kv (forward; defaults 128/64, 64/32 for head_dim > 128) and block_q_bwd/block_kv_bwd
    (both backward kernels; defaults 64/64, 32/32 for head_dim > 128), shrunk for short sequences; powers of two
    >= 16 on GPU. num_warps/num_stages go to the Triton backend on GPU (num_warps default: 4 for head_dim <= 64,
    else 8). interpret: None = True on a CPU backend.
    """
    window, scale = validate(q, k, v, q_segment_ids, kv_segment_ids, window, scale)
    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    batch, q_len, q_heads, head_dim = q.shape
    kv_len, kv_heads = k.shape[1], k.shape[2]

    head_dim_pad = max(16, pl.next_power_of_2(head_dim))
    big = head_dim_pad > 128
    bq = _block("block_q", block_q, 64 if big else 128, q_len)
    bk = _block("block_kv", block_kv, 32 if big else 64, kv_len)
    bqb = _block("block_q_bwd", block_q_bwd, 32 if big else 64, q_len)
    bkb = _block("block_kv_bwd", block_kv_bwd, 32 if big else 64, kv_len)
    if not interpret and jax.default_backend() == "gpu":
        for name, b in (("block_q", bq), ("block_kv", bk), ("block_q_bwd", bqb), ("block_kv_bwd", bkb)):
            if b < 16 or b & (b - 1):
                raise ValueError(f"{name}: the Triton backend needs a power of two >= 16, got {b}")
    q_pad = _round_up(q_len, math.lcm(bq, bqb))
    kv_pad = _round_up(kv_len, math.lcm(bk, bkb))

    def pad(x, length, axis_len):
        widths = [(0, 0)] * x.ndim
        widths[1] = (0, length - axis_len)
        if x.ndim == 4:
            widths[3] = (0, head_dim_pad - head_dim)
        return x if all(w == (0, 0) for w in widths) else jnp.pad(x, widths)

    q_p, k_p, v_p = pad(q, q_pad, q_len), pad(k, kv_pad, kv_len), pad(v, kv_pad, kv_len)
    has_segments = q_segment_ids is not None
    q_seg = kv_seg = None
    if has_segments:
        q_seg = pad(q_segment_ids.astype(jnp.int32), q_pad, q_len)
        kv_seg = pad(kv_segment_ids.astype(jnp.int32), kv_pad, kv_len)
    cfg = _Config(
        causal=bool(causal),
        window=window,
        scale=scale,
        q_len=q_len,
        kv_len=kv_len,
        group=q_heads // kv_heads,
        block_q=bq,
        block_kv=bk,
        block_q_bwd=bqb,
        block_kv_bwd=bkb,
        has_segments=has_segments,
        num_warps=num_warps,
        num_stages=num_stages,
        interpret=bool(interpret),
    )
    out = _flash(q_p, k_p, v_p, q_seg, kv_seg, cfg)
    if out.shape != q.shape:
        out = out[:, :q_len, :, :head_dim]
    return out
