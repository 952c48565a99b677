"""Rotary position embeddings (RoPE, Su et al. 2021) on `[batch, seq, heads, head_dim]` queries and keys.

Each pair of features `(x[i], x[i + head_dim/2])` (the "rotate half" layout of GPT-NeoX / Llama) is rotated by the
angle `position * base^(-2i/head_dim)`, so the dot product of a rotated query and key depends only on their
relative position. Positions are explicit integers, which is what a KV cache needs: the token written at slot `p`
is rotated by `p` once, when it enters the cache.
"""

import jax
import jax.numpy as jnp


def frequencies(head_dim: int, base: float = 10000.0) -> jax.Array:
    """The `head_dim // 2` rotation frequencies `base^(-2i/head_dim)` (float32)."""
    if head_dim % 2:
        raise ValueError(f"rope: head_dim must be even, got {head_dim}")
    return base ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)


def apply_rope(x: jax.Array, positions: jax.Array, base: float = 10000.0) -> jax.Array:
    """x [batch, seq, heads, head_dim] rotated by integer `positions` ([seq] or [batch, seq]); same dtype as x.

    The angles are computed in float32 (bf16 positions would lose integer precision past 256)."""
    if x.ndim != 4:
        raise ValueError(f"rope: x must be [batch, seq, heads, head_dim], got shape {tuple(x.shape)}")
    if positions.shape not in ((x.shape[1],), (x.shape[0], x.shape[1])):
        raise ValueError(f"rope: positions must be [seq] or [batch, seq] for x {tuple(x.shape)}, got {positions.shape}")
    angles = positions.astype(jnp.float32)[..., None] * frequencies(x.shape[-1], base)  # [(batch,) seq, half]
    if angles.ndim == 2:
        angles = angles[None]
    cos, sin = jnp.cos(angles)[:, :, None, :], jnp.sin(angles)[:, :, None, :]  # [batch|1, seq, 1, half]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)
