"""Plain-jnp multi-head attention: the numerical truth every fused kernel is tested against.

q `[B, Sq, Hq, D]`, k and v `[B, Skv, Hkv, D]` with `Hq % Hkv == 0` (query head `h` reads kv head
`h // (Hq // Hkv)`). The softmax runs in float32; the output comes back in the input dtype. Masks (shared with the
kernels through `block_mask`, one definition):

* When `Sq != Skv` queries are aligned bottom-right: query `i` sits at key position `i + (Skv - Sq)`.
* `causal`: key `j` is visible to query `i` iff `j <= pos(i)`.
* `window=(left, right)`: visible iff `pos(i) - left <= j <= pos(i) + right`; None = unbounded (right is 0 under
  causal).
* `q_segment_ids [B, Sq]`, `kv_segment_ids [B, Skv]` (integers, given together): a query sees only keys of its id.
* A query row that sees no key outputs zeros (not NaN) and receives zero gradients.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

Window = tuple[int | None, int | None] | None

__all__ = ["attention", "block_mask", "mask", "normalize_window", "validate"]


def normalize_window(window) -> Window:
    """None or (left, right) with each side a non-negative int or None; (None, None) becomes None."""
    if window is None:
        return None
    if not isinstance(window, tuple | list) or len(window) != 2:
        raise ValueError(f"window: expected None or a (left, right) pair, got {window!r}")
    out = []
    for name, w in zip(("left", "right"), window, strict=True):
        if w is None:
            out.append(None)
            continue
        if isinstance(w, bool) or not isinstance(w, int | np.integer) or w < 0:
            raise ValueError(f"window: {name} must be a non-negative int or None, got {w!r}")
        out.append(int(w))
    return None if out == [None, None] else (out[0], out[1])


def validate(q, k, v, q_segment_ids=None, kv_segment_ids=None, window=None, scale=None) -> tuple[Window, float]:
    """Checks shapes and dtypes; returns (normalized window, scale). Errors name the offending argument."""
    if q.ndim != 4:
        raise ValueError(f"q: expected [batch, seq, heads, head_dim], got shape {tuple(q.shape)}")
    batch, q_len, q_heads, head_dim = q.shape
    for name, x in (("k", k), ("v", v)):
        if x.ndim != 4 or x.shape[0] != batch or x.shape[3] != head_dim:
            raise ValueError(
                f"{name}: expected [batch, seq, heads, head_dim] with batch {batch} and head_dim {head_dim}, "
                f"got {tuple(x.shape)}"
            )
    if v.shape != k.shape:
        raise ValueError(f"v: expected the shape of k {tuple(k.shape)}, got {tuple(v.shape)}")
    if q_heads % k.shape[2]:
        raise ValueError(f"k: expected a number of heads that divides q's {q_heads} heads, got {k.shape[2]}")
    if min(q.shape) == 0 or k.shape[1] == 0:
        raise ValueError(f"q, k: expected non-empty arrays, got {tuple(q.shape)} and {tuple(k.shape)}")
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"{name}: expected a floating dtype, got {x.dtype}")
    for name, x in (("k", k), ("v", v)):
        if x.dtype != q.dtype:
            raise ValueError(f"{name}: expected dtype {q.dtype} like q, got {x.dtype}")
    if (q_segment_ids is None) != (kv_segment_ids is None):
        missing = "kv_segment_ids" if kv_segment_ids is None else "q_segment_ids"
        raise ValueError(f"{missing}: q_segment_ids and kv_segment_ids must be given together")
    if q_segment_ids is not None:
        for name, ids, length in (
            ("q_segment_ids", q_segment_ids, q_len),
            ("kv_segment_ids", kv_segment_ids, k.shape[1]),
        ):
            if tuple(ids.shape) != (batch, length):
                raise ValueError(f"{name}: expected shape [batch, seq] = {(batch, length)}, got {tuple(ids.shape)}")
            if not jnp.issubdtype(ids.dtype, jnp.integer):
                raise ValueError(f"{name}: expected an integer dtype, got {ids.dtype}")
    if scale is None:
        scale = 1.0 / math.sqrt(head_dim)
    elif isinstance(scale, bool) or not isinstance(scale, int | float | np.floating | np.integer):
        raise ValueError(f"scale: expected a Python float or None, got {type(scale).__name__}")
    return normalize_window(window), float(scale)


def block_mask(q_pos, kv_pos, q_seg=None, kv_seg=None, *, causal: bool = False, window: Window = None):
    """The attention mask on a tile: bool `[..., len(q_pos), len(kv_pos)]`, or None when nothing is masked.

    q_pos: int `[..., Tq]` query positions already shifted onto the key axis (index + Skv - Sq).
    kv_pos: int `[..., Tk]` key positions (indices). q_seg / kv_seg: segment ids of the same shapes, or None.
    Written with elementwise jnp ops only, so Pallas kernels call it on their tiles.
    """
    qp = q_pos[..., :, None]
    kp = kv_pos[..., None, :]
    conds = []
    if causal:
        conds.append(kp <= qp)
    if window is not None:
        left, right = window
        if left is not None:
            conds.append(kp >= qp - left)
        if right is not None and not causal:  # with causal, right >= 0 is implied by kp <= qp
            conds.append(kp <= qp + right)
    if q_seg is not None:
        conds.append(q_seg[..., :, None] == kv_seg[..., None, :])
    if not conds:
        return None
    out = conds[0]
    for c in conds[1:]:
        out = jnp.logical_and(out, c)
    return out


def mask(
    q_len: int,
    kv_len: int,
    *,
    causal: bool = False,
    window: Window = None,
    q_segment_ids=None,
    kv_segment_ids=None,
) -> jax.Array:
    """Full boolean mask `[B, q_len, kv_len]` (B = 1 without segment ids); True = the query sees the key."""
    window = normalize_window(window)
    q_pos = jnp.arange(q_len, dtype=jnp.int32) + (kv_len - q_len)  # bottom-right alignment
    kv_pos = jnp.arange(kv_len, dtype=jnp.int32)
    if q_segment_ids is not None:
        q_pos = jnp.broadcast_to(q_pos, q_segment_ids.shape)
        kv_pos = jnp.broadcast_to(kv_pos, kv_segment_ids.shape)
    m = block_mask(q_pos, kv_pos, q_segment_ids, kv_segment_ids, causal=causal, window=window)
    if m is None:
        return jnp.ones((1, q_len, kv_len), bool)
    return m if m.ndim == 3 else m[None]


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
) -> jax.Array:
    """softmax(q kᵀ · scale + mask) v. q [B, Sq, Hq, D], k/v [B, Skv, Hkv, D] -> [B, Sq, Hq, D] in q.dtype."""
    window, scale = validate(q, k, v, q_segment_ids, kv_segment_ids, window, scale)
    batch, q_len, q_heads, head_dim = q.shape
    kv_len, kv_heads = k.shape[1], k.shape[2]
    group = q_heads // kv_heads
    hi = jax.lax.Precision.HIGHEST
    qf = q.astype(jnp.float32).reshape(batch, q_len, kv_heads, group, head_dim)
    s = jnp.einsum("bqhgd,bkhd->bhgqk", qf, k.astype(jnp.float32), precision=hi) * scale
    m = mask(
        q_len,
        kv_len,
        causal=causal,
        window=window,
        q_segment_ids=q_segment_ids,
        kv_segment_ids=kv_segment_ids,
    )[:, None, None]  # [B|1, 1, 1, Sq, Skv]
    s = jnp.where(m, s, -jnp.inf)
    row_max = jax.lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True))
    row_max = jnp.where(jnp.isfinite(row_max), row_max, 0.0)  # fully masked rows: exp(-inf - 0) = 0
    p = jnp.exp(s - row_max)
    denom = jnp.sum(p, axis=-1, keepdims=True)
    p = p / jnp.where(denom == 0.0, 1.0, denom)
    out = jnp.einsum("bhgqk,bkhd->bqhgd", p, v.astype(jnp.float32), precision=hi)
    return out.reshape(batch, q_len, q_heads, head_dim).astype(q.dtype)
