"""Max pooling over non-overlapping windows as a reshape + max, with the gradient `lax.reduce_window` has.

Why not `nnx.max_pool` (= `lax.reduce_window(max)`): its gradient is a select-and-scatter, which XLA:CPU expands
into a reduce-window over (value, iota) pairs and a scatter; in a LeNet-5 train step those iotas, the scatter and
the reduce-windows take ~20 ms of a ~55 ms step on 2 cores (experiments/cpu_perf/profile_step.py). For windows
that tile the input (window == strides, VALID padding: LeNet, VGG) the same pooling is a reshape and a max over
the window axes, whose gradient is elementwise.

Numerics: the forward pass is bitwise equal to `nnx.max_pool`. The gradient goes, as select-and-scatter's does, to
the *first* maximum of each window in row-major window order (a plain `max` reduction would split it among tied
maxima), so gradients are bitwise equal too, ties included (tests/test_pool.py). NaNs: a window holding a NaN
pools to NaN and passes no gradient.
"""

import functools

import jax
import jax.numpy as jnp
from flax import nnx


def max_pool(x: jax.Array, window: tuple[int, int], strides: tuple[int, int] | None = None) -> jax.Array:
    """[batch, height, width, channels] -> [batch, height // wh, width // ww, channels], VALID padding (trailing
    rows/columns that do not fill a window are dropped, as `nnx.max_pool` does). Overlapping windows
    (strides != window) fall back to `nnx.max_pool`."""
    if x.ndim != 4:
        raise ValueError(f"max_pool expects [batch, height, width, channels], got shape {x.shape}")
    window, strides = tuple(window), tuple(strides or window)
    if strides != window:
        return nnx.max_pool(x, window, strides=strides)
    if x.shape[1] < window[0] or x.shape[2] < window[1]:
        raise ValueError(f"max_pool window {window} is larger than the input's spatial shape {x.shape[1:3]}")
    return _tiled_max(x, window)


def _windows(x: jax.Array, window: tuple[int, int]) -> jax.Array:
    """[b, h, w, c] -> [b, h // wh, wh, w // ww, ww, c] (trailing rows/columns that fill no window dropped)."""
    b, h, w, c = x.shape
    (wh, ww), (ho, wo) = window, (h // window[0], w // window[1])
    return x[:, : ho * wh, : wo * ww].reshape(b, ho, wh, wo, ww, c)


def _fwd(x, window):
    xw = _windows(x, window)
    out = xw.max(axis=(2, 4))
    return out, (xw, out, x.shape)


def _bwd(window, res, g):
    del window
    xw, out, shape = res
    # the first position (row-major over the window) equal to the window's max gets the whole gradient; of the
    # exact formulations tried (this cumsum over the flattened window, a running "seen" mask) this was fastest
    hit = xw == out[:, :, None, :, None, :]
    b, ho, wh, wo, ww, c = xw.shape
    flat = hit.transpose(0, 1, 3, 2, 4, 5).reshape(b, ho, wo, wh * ww, c)  # [b, ho, wo, wh·ww, c], row-major
    first = flat & (jnp.cumsum(flat, axis=3) == 1)
    first = first.reshape(b, ho, wo, wh, ww, c).transpose(0, 1, 3, 2, 4, 5)  # back to [b, ho, wh, wo, ww, c]
    dx = jnp.where(first, g[:, :, None, :, None, :], 0).astype(g.dtype).reshape(b, ho * wh, wo * ww, c)
    pad = ((0, 0), (0, shape[1] - ho * wh), (0, shape[2] - wo * ww), (0, 0))
    return (jnp.pad(dx, pad),)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tiled_max(x: jax.Array, window: tuple[int, int]) -> jax.Array:
    return _windows(x, window).max(axis=(2, 4))


_tiled_max.defvjp(_fwd, _bwd)
