"""Convolutional autoencoder: images [b, H, W, C] in [0, 1] -> latent [b, latent] -> pixel logits [b, H, W, C]
(sigmoid = the reconstruction; the `autoencode` task trains it with per-pixel binary cross-entropy)."""

import jax
from flax import nnx

from jaxdl.models.generative._conv import Decoder, Encoder, check_input_shape


class Model(nnx.Module):
    """`encode` [b, H, W, C] -> [b, latent]; `decode` -> logits [b, H, W, C]; `__call__` = decode(encode(x))."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        latent: int = 32,
        width: int = 32,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        del num_classes  # unconditional
        self.shape = check_input_shape(input_shape, "conv_ae")
        if latent < 1 or width < 1:
            raise ValueError(f"config.model.latent={latent} and config.model.width={width} must be >= 1")
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.encoder = Encoder(self.shape, width, latent, **kw)
        self.decoder = Decoder(self.shape, width, latent, **kw)

    def encode(self, x: jax.Array) -> jax.Array:
        return self.encoder(x)

    def decode(self, z: jax.Array) -> jax.Array:
        return self.decoder(z)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        del train, rngs
        return self.decode(self.encode(x))
