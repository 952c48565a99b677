"""DCGAN (Radford et al. 2016) for 28x28 images in [0, 1]: two networks in one module, the parameter groups
`generator` and `discriminator` of the `gan` task (each with its own optimizer).

generator: z [b, latent] -> dense -> [H/4, W/4, 2 width] -> norm-ReLU -> convT/2 (width) -> norm-ReLU -> convT/2
(C) -> sigmoid: images [b, H, W, C] in [0, 1]. discriminator: images -> conv4x4/2 (width) -> LeakyReLU(0.2) ->
conv4x4/2 (2 width) -> LeakyReLU -> flatten -> dense: one logit [b] (real vs generated). `g_norm` ("batch" as in
the paper, or "layer" / "none") normalizes the generator's hidden layers; the discriminator has none (so the R1
penalty of the `gan` task is per example).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.layers.dense import dense
from jaxdl.layers.norm import apply_norm, check_norm, make_norm
from jaxdl.models.generative._conv import check_input_shape, conv, conv_up


class Generator(nnx.Module):
    def __init__(self, shape, latent: int, width: int, norm: str, *, kw: dict, rngs: nnx.Rngs):
        h, w, c = shape
        self.latent = latent
        self.grid = (h // 4, w // 4, 2 * width)
        self.fc = dense(latent, int(np.prod(self.grid)), ("embed", "mlp"), rngs=rngs, **kw)
        self.norm0 = make_norm(norm, self.grid[-1], rngs=rngs, **kw)
        self.up1 = conv_up(2 * width, width, rngs=rngs, **kw)
        self.norm1 = make_norm(norm, width, rngs=rngs, **kw)
        self.up2 = conv_up(width, c, rngs=rngs, **kw)

    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        h = self.fc(z).reshape(z.shape[0], *self.grid)
        h = nnx.relu(apply_norm(self.norm0, h, train))
        h = nnx.relu(apply_norm(self.norm1, self.up1(h), train))
        return nnx.sigmoid(self.up2(h).astype(jnp.float32))


class Discriminator(nnx.Module):
    def __init__(self, shape, width: int, *, kw: dict, rngs: nnx.Rngs):
        h, w, c = shape
        self.conv1 = conv(c, width, kernel=4, stride=2, rngs=rngs, **kw)
        self.conv2 = conv(width, 2 * width, kernel=4, stride=2, rngs=rngs, **kw)
        self.fc = dense(2 * width * (h // 4) * (w // 4), 1, ("embed", "vocab"), rngs=rngs, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = nnx.leaky_relu(self.conv1(x), 0.2)
        h = nnx.leaky_relu(self.conv2(h), 0.2)
        return self.fc(h.reshape(h.shape[0], -1))[:, 0].astype(jnp.float32)


class Model(nnx.Module):
    """`generator(z, train)` -> images [b, H, W, C] in [0, 1]; `discriminator(x)` -> logits [b];
    `__call__(x)` = the discriminator's logits (a model maps images to outputs, like the others)."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        latent: int = 64,
        width: int = 64,
        g_norm: str = "batch",
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        del num_classes  # unconditional
        self.shape = check_input_shape(input_shape, "dcgan")
        check_norm(g_norm, "config.model.g_norm", ("batch", "layer", "none"))
        if latent < 1 or width < 1:
            raise ValueError(f"config.model.latent={latent} and config.model.width={width} must be >= 1")
        self.latent = latent
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        self.generator = Generator(self.shape, latent, width, g_norm, kw=kw, rngs=rngs)
        self.discriminator = Discriminator(self.shape, width, kw=kw, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        del train, rngs
        return self.discriminator(x)
