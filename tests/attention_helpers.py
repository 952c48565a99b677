"""Shared helpers of the attention kernel tests: seeded inputs, packed segment ids, forward + all three gradients."""

import zlib

import jax
import jax.numpy as jnp
import numpy as np

TOL = {jnp.float32: 1e-5, jnp.bfloat16: 2e-2, jnp.float16: 2e-2}  # relative error bounds (DESIGN.md)


def rng_for(request) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def qkv(rng, batch, q_len, kv_len, q_heads, kv_heads, head_dim, dtype):
    q = rng.standard_normal((batch, q_len, q_heads, head_dim), np.float32)
    k = rng.standard_normal((batch, kv_len, kv_heads, head_dim), np.float32)
    v = rng.standard_normal((batch, kv_len, kv_heads, head_dim), np.float32)
    return tuple(jnp.asarray(x, dtype) for x in (q, k, v))


def segments(rng, batch, length, pad_id, n_segments=3):
    """int32 [batch, length]: n_segments random-length packed segments (ids 1..n) then a padding tail of pad_id."""
    ids = np.full((batch, length), pad_id, np.int32)
    for b in range(batch):
        used = int(rng.integers(length * 3 // 4, length))  # leave a padding tail
        cuts = np.sort(rng.choice(np.arange(1, used), n_segments - 1, replace=False))
        for s, (lo, hi) in enumerate(zip(np.r_[0, cuts], np.r_[cuts, used], strict=True)):
            ids[b, lo:hi] = s + 1
    return jnp.asarray(ids)


def run(impl, q, k, v, ct, **kw):
    def loss(q, k, v):
        out = impl(q, k, v, **kw)
        return jnp.sum(out.astype(jnp.float32) * ct), out

    (dq, dk, dv), out = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(q, k, v)
    return out, dq, dk, dv
