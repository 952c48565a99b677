"""jaxdl.layers.pool.max_pool against `nnx.max_pool` (lax.reduce_window + its select-and-scatter gradient), the
implementation it replaces in LeNet-5 and VGG: forward and gradient bitwise equal, on random inputs and on inputs
full of ties (integer-valued), with sizes a window does not divide; overlapping windows fall back; bad shapes fail."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.layers.pool import max_pool


def _reference(x, window, strides=None):
    return nnx.max_pool(x, window, strides=strides or window)


def _weighted_sum(pool):
    # distinct weights per output element so a gradient sent to the wrong position cannot cancel out
    return lambda x: jnp.sum(jnp.sin(pool(x)) * jnp.arange(1.0, 1.0 + pool(x).size).reshape(pool(x).shape))


@pytest.mark.parametrize(
    "shape,window,ties",
    [((3, 8, 8, 4), (2, 2), False), ((2, 9, 7, 3), (2, 2), True), ((2, 10, 12, 2), (3, 2), True)],
)
def test_forward_and_gradient_bitwise_equal_reduce_window(shape, window, ties):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, shape) if ties else rng.standard_normal(shape)
    x = jnp.asarray(x, jnp.float32)
    assert jnp.array_equal(max_pool(x, window), _reference(x, window))
    got = jax.grad(_weighted_sum(lambda h: max_pool(h, window)))(x)
    want = jax.grad(_weighted_sum(lambda h: _reference(h, window)))(x)
    assert jnp.array_equal(got, want)
    if ties:  # the tie rule matters here: a plain max reduction would split the gradient among tied maxima
        split = jax.grad(_weighted_sum(lambda h: jnp.max(_windowed(h, window), axis=(2, 4))))(x)
        assert not jnp.array_equal(split, want)


def _windowed(x, window):
    b, h, w, c = x.shape
    ho, wo = h // window[0], w // window[1]
    return x[:, : ho * window[0], : wo * window[1]].reshape(b, ho, window[0], wo, window[1], c)


def test_overlapping_windows_fall_back_and_bad_shapes_fail():
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 7, 7, 3)), jnp.float32)
    assert jnp.array_equal(max_pool(x, (3, 3), (2, 2)), nnx.max_pool(x, (3, 3), strides=(2, 2)))
    with pytest.raises(ValueError, match=r"\[batch, height, width, channels\]"):
        max_pool(x[0], (2, 2))
    with pytest.raises(ValueError, match="larger than"):
        max_pool(x, (8, 2))
