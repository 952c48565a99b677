"""Fused attention: `reference` (plain jnp, the truth), `pallas`, `triton` (+ `triton_kernels`, `launch_config`,
`tune`) and `api` (`attention(..., impl=...)`, what models call).

Each implementation exposes `attention(q, k, v, *, causal, q_segment_ids, kv_segment_ids, window, scale)` on
`[batch, seq, heads, head_dim]` arrays with the same semantics (see `reference`'s docstring). `triton` (which
imports Triton) is imported on first use.
"""

from kernels.attention import pallas, reference

__all__ = ["pallas", "reference"]
