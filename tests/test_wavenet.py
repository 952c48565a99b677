"""WaveNet (jaxdl.models.speech.wavenet): causality and receptive field by perturbation, Fast WaveNet generation equal
to naive recomputation (same key → same samples), cached steps equal to the full forward pass, and input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.models.speech import wavenet

_forward = nnx.jit(lambda m, x, cond=None: m(x, cond))
_step = nnx.jit(lambda m, queues, t, x, c: m.step(queues, t, x, c))


def _model(cond_channels=0, hop=4, seed=0):
    with nnx.use_eager_sharding(False):
        return wavenet.Model(
            input_shape=(64,), layers=3, stacks=2, residual=8, skip=16, cond_channels=cond_channels, hop=hop,
            cond_hidden=6, rngs=nnx.Rngs(seed),
        )  # fmt: skip


def test_causal_with_exact_receptive_field():
    m = _model()
    r = m.receptive_field
    assert r == 1 + 2 * (1 + 2 + 4)
    x = jax.random.randint(jax.random.key(0), (2, 64), 0, 256)
    t0 = 20
    y = _forward(m, x)
    y2 = _forward(m, x.at[:, t0].set((x[:, t0] + 77) % 256))
    changed = np.asarray(jnp.abs(y2 - y).max(axis=(0, 2)) > 1e-6)
    # outputs before t0 never see x[t0]; outputs t0 … t0 + r - 1 do; later ones are out of the receptive field
    assert not changed[:t0].any()
    assert changed[t0 : t0 + r].all()
    assert not changed[t0 + r :].any()


def test_conditioning_is_used_and_local():
    m = _model(cond_channels=5, hop=4)
    x = jax.random.randint(jax.random.key(0), (1, 32), 0, 256)
    cond = jax.random.normal(jax.random.key(1), (1, 8, 5))
    y = _forward(m, x, cond)
    y2 = _forward(
        m, x, cond.at[:, 4].add(1.0)
    )  # frame 4 conditions samples 16..19; the width-3 frame conv spreads it ±1 frame
    changed = np.asarray(jnp.abs(y2 - y).max(axis=(0, 2)) > 1e-6)
    # frames 3..5 see the change through the width-3 frame convolution: samples 12..23 change, earlier ones never
    # (later outputs change too, through the causal stack's memory of samples 12..23)
    assert changed[12:24].all() and not changed[:12].any()


@pytest.mark.parametrize("conditioned", [False, True])
def test_fast_generation_equals_naive_recomputation(conditioned):
    m = _model(cond_channels=5 if conditioned else 0, hop=4)
    length, batch = 60, 3
    cond = jax.random.normal(jax.random.key(5), (batch, 15, 5)) if conditioned else None
    key = jax.random.key(7)
    fast = np.asarray(wavenet.generate(m, key, length=length, batch=batch, cond=cond))
    naive = np.asarray(wavenet.generate_naive(m, key, length=length, batch=batch, cond=cond))
    assert fast.shape == (batch, length) and fast.dtype == np.int32
    np.testing.assert_array_equal(fast, naive)
    # the samples are random draws (not a constant): rows differ and another key gives other samples
    assert len({tuple(r) for r in fast}) == batch
    other = np.asarray(wavenet.generate(m, jax.random.key(8), length=length, batch=batch, cond=cond))
    assert (other != fast).mean() > 0.5


def test_cached_steps_equal_full_forward_logits():
    """Teacher forcing a fixed sequence through the per-layer queues gives the full pass's logits at every t."""
    m = _model(cond_channels=5, hop=4)
    x = jax.random.randint(jax.random.key(2), (2, 40), 0, 256)
    cond = jax.random.normal(jax.random.key(3), (2, 10, 5))
    full = _forward(m, x, cond)
    c = m.upsample(cond, 40)
    queues, steps = m.init_queues(2), []
    for t in range(40):
        logits, queues = _step(m, queues, jnp.int32(t), x[:, t], c[:, t])
        steps.append(logits)
    np.testing.assert_allclose(np.stack(steps, 1), full, rtol=1e-5, atol=1e-5)


def test_bad_inputs_name_the_problem():
    m = _model(cond_channels=5, hop=4)
    x = jnp.zeros((1, 32), jnp.int32)
    with pytest.raises(ValueError, match="cond of shape"):
        m(x, jnp.zeros((1, 7, 5)))  # 7 frames * hop 4 != 32 samples
    with pytest.raises(ValueError, match="no `cond`"):
        m(x)
    with pytest.raises(ValueError, match="int μ-law codes"):
        m(jnp.zeros((1, 32)), jnp.zeros((1, 8, 5)))
    with pytest.raises(ValueError, match="unconditioned"):
        _model()(x, jnp.zeros((1, 8, 5)))
    with pytest.raises(ValueError, match="config.model.layers=0"):
        wavenet.Model(input_shape=(8,), layers=0, rngs=nnx.Rngs(0))
