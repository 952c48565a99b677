"""jaxdl.layers.attention.Attention, the one attention module of every model: the KV-cache path equals the full
sequence (GQA, RoPE, biases, sliding window), padding masks, cross-attention from a context or cached keys/values,
the probability-dropout path against the kernel op, and errors that name the argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.layers.attention import Attention, softmax_attention
from kernels.attention import reference


def _layer(**kw):
    with nnx.use_eager_sharding(False):
        return Attention(32, 4, rngs=nnx.Rngs(0), **kw)


def _x(shape, seed=1):
    return jax.random.normal(jax.random.key(seed), shape)


@pytest.mark.parametrize("window", [None, (3, 0)])
def test_cache_path_equals_the_full_sequence(window):
    """Prefill 5 tokens, then 1 at a time into a 12-slot cache: the same outputs as one causal call."""
    attn = _layer(kv_heads=2, causal=True, rope=True, use_bias=True, window=window)
    for seed, name in enumerate(("bq", "bk", "bv", "bo"), start=10):  # non-zero biases: a missing one would show
        var = getattr(attn, name)
        var.set_value(_x(var.shape, seed=seed))
    x = _x((2, 9, 32))
    full = attn(x)
    cache = jnp.zeros((2, 12, 2, 8))
    k, v = cache, cache
    out, k, v = attn.cached(x[:, :5], jnp.arange(5), jnp.int32(0), k, v)
    outs = [out]
    for i in range(5, 9):
        out, k, v = attn.cached(x[:, i : i + 1], jnp.arange(i, i + 1), jnp.int32(i), k, v)
        outs.append(out)
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=2e-6, rtol=1e-5)


def test_key_mask_hides_padding_and_equals_segment_ids():
    attn = _layer()
    x = _x((2, 7, 32))
    real = jnp.arange(7)[None] < jnp.array([[7], [4]])
    out = attn(x, key_mask=real)
    noise = jnp.where(real[..., None], x, 100.0 * _x(x.shape, seed=2))  # change only the padded positions
    np.testing.assert_allclose(attn(noise, key_mask=real)[1, :4], out[1, :4], atol=1e-6)
    ones = jnp.ones((2, 7), jnp.int32)
    np.testing.assert_array_equal(out, attn(x, q_segment_ids=ones, kv_segment_ids=real.astype(jnp.int32)))
    assert not np.allclose(attn(x)[1, :4], out[1, :4], atol=1e-3)  # the mask is what hides them


def test_cross_attention_from_context_or_cached_kv():
    attn = _layer(use_bias=True)
    x, memory = _x((2, 3, 32)), _x((2, 6, 32), seed=3)
    valid = jnp.arange(6)[None] < jnp.array([[6], [2]])
    a = attn(x, memory, key_mask=valid)
    b = attn(x, kv=attn.project_kv(memory), key_mask=valid, impl="xla")
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 3, 32) and a.dtype == jnp.float32


def test_dropout_path_is_the_op_without_dropout_and_drops_in_training():
    attn = _layer(kv_heads=2, dropout=0.5, causal=True)
    x = _x((2, 6, 32))
    q, (k, v) = attn.project_q(x), attn.project_kv(x)
    visible = reference.mask(6, 6, causal=True)
    np.testing.assert_allclose(
        softmax_attention(q, k, v, visible), reference.attention(q, k, v, causal=True), atol=1e-6, rtol=1e-6
    )
    a = attn(x, train=True, rngs=nnx.Rngs(dropout=4))
    np.testing.assert_array_equal(a, attn(x, train=True, rngs=nnx.Rngs(dropout=4)))  # a function of the key
    assert not np.allclose(a, attn(x), atol=1e-3)  # eval: no dropout (the kernel op)
    with pytest.raises(ValueError, match="needs rngs"):
        attn(x, train=True)


def test_bf16_compute_over_fp32_params():
    attn = _layer(dtype="bfloat16", kv_heads=1)
    x = _x((2, 5, 32))
    out = attn(x)
    assert out.dtype == jnp.bfloat16 and attn.wq[...].dtype == jnp.float32
    np.testing.assert_allclose(out.astype(jnp.float32), _layer(kv_heads=1)(x), atol=0.05, rtol=0.05)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"config.model.dim=30 is not divisible by config.model.heads=4"):
        Attention(30, 4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="config.model.num_kv_heads=3"):
        _layer(kv_heads=3)
    with pytest.raises(ValueError, match="config.model.attention_impl='flash'"):
        _layer(attention_impl="flash")
    with pytest.raises(ValueError, match="attention_impl='pallas' with attention dropout"):
        _layer(attention_impl="pallas", dropout=0.1)
    with pytest.raises(ValueError, match="window"):
        _layer(window=(2,))
    x = _x((1, 4, 32))
    with pytest.raises(ValueError, match="rope applies to self-attention only"):
        _layer(rope=True)(x, x)
    with pytest.raises(ValueError, match="needs a causal module"):
        _layer().cached(x, jnp.arange(4), jnp.int32(0), jnp.zeros((1, 8, 4, 8)), jnp.zeros((1, 8, 4, 8)))
    with pytest.raises(ValueError, match="key_mask or segment ids"):
        _layer()(x, key_mask=jnp.ones((1, 4), bool), q_segment_ids=jnp.ones((1, 4), jnp.int32))
