"""The convolutional encoder / decoder pair the autoencoder and the VAE share, and the input checks of every
generative model (images [H, W, C] with H and W divisible by 4, values in [0, 1])."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.layers.conv import conv2d
from jaxdl.layers.dense import dense
from jaxdl.layers.dtypes import to_dtype

CONV_AXES = (None, None, "embed", "mlp")


def check_input_shape(input_shape: tuple[int, ...], model: str) -> tuple[int, int, int]:
    """(H, W, C) of an image input shape; ValueError naming the model unless it is [H, W, C], H and W % 4 == 0."""
    if len(input_shape) != 3 or input_shape[0] % 4 or input_shape[1] % 4:
        raise ValueError(
            f"model {model!r} takes images [height, width, channels] with height and width divisible by 4 "
            f"(two stride-2 stages); got input_shape={tuple(input_shape)}"
        )
    return tuple(int(d) for d in input_shape)


def check_images(x, shape: tuple[int, ...], what: str) -> None:
    """ValueError naming `what` unless `x` is [batch, *shape] with values in [0, 1] (checked when concrete)."""
    if tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"{what}: expected images [batch, {', '.join(map(str, shape))}], got shape {tuple(x.shape)}")
    if isinstance(x, jax.core.Tracer):
        return
    lo, hi = float(jnp.min(x)), float(jnp.max(x))
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{what}: pixel values must lie in [0, 1] (use dataset 'fashion_mnist_unit', not the mean/std "
            f"normalized 'fashion_mnist'); got min {lo:.3g}, max {hi:.3g}"
        )


# the generative models' convolutions: biased, LeCun-normal kernels
conv = functools.partial(conv2d, bias=True, init="lecun")


def conv_up(cin: int, cout: int, *, dtype: str, param_dtype: str, rngs: nnx.Rngs):
    """nnx.ConvTranspose [b, H, W, cin] -> [b, 2H, 2W, cout] (kernel 4, stride 2, SAME)."""
    return nnx.ConvTranspose(
        cin,
        cout,
        kernel_size=(4, 4),
        strides=(2, 2),
        padding="SAME",
        kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), CONV_AXES),
        dtype=to_dtype(dtype),
        param_dtype=to_dtype(param_dtype),
        rngs=rngs,
    )


class Encoder(nnx.Module):
    """[b, H, W, C] -> [b, out]: conv3x3/2 (width) -> ReLU -> conv3x3/2 (2 width) -> ReLU -> flatten -> dense."""

    def __init__(self, shape, width: int, out: int, *, dtype: str, param_dtype: str, rngs: nnx.Rngs):
        h, w, c = shape
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.conv1 = conv(c, width, stride=2, **kw)
        self.conv2 = conv(width, 2 * width, stride=2, **kw)
        self.fc = dense(2 * width * (h // 4) * (w // 4), out, ("embed", "mlp"), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = nnx.relu(self.conv2(nnx.relu(self.conv1(x))))
        return self.fc(h.reshape(h.shape[0], -1)).astype(jnp.float32)


class Decoder(nnx.Module):
    """[b, latent] -> pixel logits [b, H, W, C] (float32): dense -> [H/4, W/4, 2 width] -> ReLU -> convT/2 (width)
    -> ReLU -> convT/2 (C)."""

    def __init__(self, shape, width: int, latent: int, *, dtype: str, param_dtype: str, rngs: nnx.Rngs):
        h, w, c = shape
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.grid = (h // 4, w // 4, 2 * width)
        self.fc = dense(latent, int(np.prod(self.grid)), ("embed", "mlp"), **kw)
        self.up1 = conv_up(2 * width, width, **kw)
        self.up2 = conv_up(width, c, **kw)

    def __call__(self, z: jax.Array) -> jax.Array:
        h = nnx.relu(self.fc(z)).reshape(z.shape[0], *self.grid)
        return self.up2(nnx.relu(self.up1(h))).astype(jnp.float32)
