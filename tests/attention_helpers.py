"""Shared helpers of the attention tests: seeded inputs, packed segment ids, forward + all three gradients, an
independent float64 numpy attention, and a counter of the kernels an attention call actually launched."""

import collections
import importlib.util
import types
import zlib

import jax
import jax.numpy as jnp
import numpy as np

TOL = {jnp.float32: 1e-5, jnp.bfloat16: 2e-2, jnp.float16: 2e-2}  # relative error bounds (DESIGN.md)
HAS_TRITON = importlib.util.find_spec("triton") is not None


def rng_for(request) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def qkv(rng, batch, q_len, kv_len, q_heads, kv_heads, head_dim, dtype):
    """q [batch, q_len, q_heads, head_dim], k and v [batch, kv_len, kv_heads, head_dim]: standard normal, `dtype`."""
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
    """(out, dq, dk, dv) of `impl(q, k, v, **kw)` under jax.jit; gradients of sum(out * ct) in float32."""

    def loss(q, k, v):
        out = impl(q, k, v, **kw)
        return jnp.sum(out.astype(jnp.float32) * ct), out

    (dq, dk, dv), out = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(q, k, v)
    return out, dq, dk, dv


def numpy_attention(q, k, v, *, causal=False, scale=None):
    """softmax(q kᵀ · scale [+ causal mask]) v in float64 numpy, written from the definition (no jax, no reference.py).

    q [B, Sq, Hq, D], k/v [B, Skv, Hkv, D] (GQA: query head h reads kv head h // (Hq // Hkv)); causal aligned
    bottom-right (query i sees keys j <= i + Skv - Sq). Returns float64 [B, Sq, Hq, D].
    """
    q, k, v = (np.asarray(jnp.asarray(x, jnp.float32), np.float64) for x in (q, k, v))
    group = q.shape[2] // k.shape[2]
    k, v = np.repeat(k, group, axis=2), np.repeat(v, group, axis=2)
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = np.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if causal:
        q_len, kv_len = q.shape[1], k.shape[1]
        visible = np.arange(kv_len)[None, :] <= np.arange(q_len)[:, None] + (kv_len - q_len)
        s = np.where(visible, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhqk,bkhd->bqhd", p, v)


def count_kernel_launches(monkeypatch) -> collections.Counter:
    """A Counter of the attention implementations traced from now on, keyed `"<impl>:<kernel>"`.

    Counts at the kernels' own entry points, below any model or layer code: every Triton launch
    (`kernels.attention.triton`'s `triton_call`, e.g. `"triton:flash_attention_fwd"`), every Pallas kernel
    (`pallas_call` in `kernels.attention.pallas`, e.g. `"pallas:flash_attention_dq"`), the XLA reference
    (`"xla:reference"`) and cuDNN (`"cudnn:dot_product_attention"`). Counting happens when a computation is
    traced, so a launch inside a jitted step counts once per compilation.
    """
    from kernels.attention import pallas, reference

    counts: collections.Counter = collections.Counter()
    if HAS_TRITON:
        from kernels.attention import triton as fa

        real_triton_call = fa.triton_call

        def triton_call(*args, name="", **kwargs):
            counts[f"triton:{name}"] += 1
            return real_triton_call(*args, name=name, **kwargs)

        monkeypatch.setattr(fa, "triton_call", triton_call)

    real_pallas_call = pallas.pl.pallas_call

    def pallas_call(*args, name=None, **kwargs):
        counts[f"pallas:{name}"] += 1
        return real_pallas_call(*args, name=name, **kwargs)

    monkeypatch.setattr(pallas, "pl", types.SimpleNamespace(**{**vars(pallas.pl), "pallas_call": pallas_call}))

    real_reference = reference.attention

    def reference_attention(*args, **kwargs):
        counts["xla:reference"] += 1
        return real_reference(*args, **kwargs)

    monkeypatch.setattr(reference, "attention", reference_attention)

    real_dpa = jax.nn.dot_product_attention

    def dot_product_attention(*args, implementation=None, **kwargs):
        if implementation == "cudnn":
            counts["cudnn:dot_product_attention"] += 1
        return real_dpa(*args, implementation=implementation, **kwargs)

    monkeypatch.setattr(jax.nn, "dot_product_attention", dot_product_attention)
    return counts


def kernels_of(counts: collections.Counter) -> set[str]:
    """The implementations that launched something: a subset of {"xla", "cudnn", "pallas", "triton"}."""
    return {key.split(":")[0] for key, n in counts.items() if n}
