"""Variational autoencoder (Kingma & Welling 2014): Gaussian encoder q(z|x) = N(μ(x), diag σ²(x)), standard normal
prior, Bernoulli decoder p(x|z) with pixel logits. The ELBO, β and the importance-weighted bound are the `vae`
task's (`jaxdl.tasks.vae`); this module holds the networks and the reparameterization."""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models.generative._conv import Decoder, Encoder, check_input_shape


class Model(nnx.Module):
    """`encode` [b, H, W, C] -> (mean, logvar) [b, latent] each; `decode` [..., latent] -> logits [..., H, W, C];
    `__call__` decodes the posterior mean (a deterministic reconstruction, for evaluators)."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        latent: int = 16,
        width: int = 32,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        del num_classes  # unconditional
        self.shape = check_input_shape(input_shape, "vae")
        if latent < 1 or width < 1:
            raise ValueError(f"config.model.latent={latent} and config.model.width={width} must be >= 1")
        self.latent = latent
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.encoder = Encoder(self.shape, width, 2 * latent, **kw)
        self.decoder = Decoder(self.shape, width, latent, **kw)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, logvar = jnp.split(self.encoder(x), 2, axis=-1)
        return mean, logvar

    def decode(self, z: jax.Array) -> jax.Array:
        """z [..., latent] -> logits [..., H, W, C] (leading axes flattened through the decoder and restored)."""
        lead = z.shape[:-1]
        return self.decoder(z.reshape(-1, self.latent)).reshape(*lead, *self.shape)

    @staticmethod
    def reparameterize(mean: jax.Array, logvar: jax.Array, eps: jax.Array) -> jax.Array:
        """z = μ + σ ε (ε ~ N(0, I) given, broadcast over leading sample axes): differentiable in μ and log σ²."""
        return mean + jnp.exp(0.5 * logvar) * eps

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        del train, rngs
        return self.decode(self.encode(x)[0])
