"""Fused attention kernels: `reference` (plain jnp, the numerical truth) and `pallas` (FlashAttention-2 in Pallas).

Both expose `attention(q, k, v, *, causal, q_segment_ids, kv_segment_ids, window, scale)` on
`[batch, seq, heads, head_dim]` arrays with the same semantics (see `reference`'s docstring).
"""

from kernels.attention import pallas, reference

__all__ = ["pallas", "reference"]
