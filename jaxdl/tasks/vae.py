"""Variational autoencoder training by the ELBO (Kingma & Welling 2014), β-VAE option (Higgins et al. 2017), and
the importance-weighted bound (Burda et al. 2016) for evaluation. Model: `jaxdl.models.generative.vae` (or any
module with `encode(x) -> (mean, logvar)`, `decode(z) -> logits`, `latent`, `shape`).

Likelihood: Bernoulli pixels, so inputs are binary. With `binarize=True` (default) each training batch is
dynamically binarized, x ~ Bernoulli(pixel in [0, 1]) with the step's key (Salakhutdinov & Murray 2008); the `elbo`
evaluator binarizes its split once with a fixed key, so its bounds are log-likelihoods in nats of a fixed binary
dataset. Per example, in nats:
    log p(x|z) = Σ_pixels x log σ(l) + (1 - x) log(1 - σ(l)),  l = decode(z),  z = μ + σ ε
    KL(q(z|x) || N(0, I)) = ½ Σ_latent (σ² + μ² - 1 - log σ²)
    loss = mean over the batch of -log p(x|z) + β KL   (β = 1: the negative ELBO)
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxdl.tasks.base import Task as BaseTask

LOG_2PI = float(jnp.log(2.0 * jnp.pi))


def elbo_terms(model: nnx.Module, x: jax.Array, eps: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(log p(x|z) [b], KL [b]) in nats for binary x [b, H, W, C] and ε [b, latent] (one sample per example)."""
    mean, logvar = model.encode(x)
    logits = model.decode(model.reparameterize(mean, logvar, eps))
    log_px = -jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x), axis=tuple(range(1, x.ndim)))
    kl = 0.5 * jnp.sum(jnp.exp(logvar) + mean**2 - 1.0 - logvar, axis=-1)
    return log_px, kl


def iw_log_likelihood(model: nnx.Module, x: jax.Array, key: jax.Array, k: int) -> jax.Array:
    """The importance-weighted lower bound on log p(x) [b] in nats with k samples of q(z|x) (k = 1: the ELBO;
    it rises to log p(x) as k grows): logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log k."""
    mean, logvar = model.encode(x)
    eps = jax.random.normal(key, (k, *mean.shape))
    z = model.reparameterize(mean, logvar, eps)  # [k, b, latent]
    logits = model.decode(z)  # [k, b, H, W, C]
    log_px = -jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x[None]), axis=tuple(range(2, logits.ndim)))
    log_pz = -0.5 * jnp.sum(z**2 + LOG_2PI, axis=-1)
    log_qz = -0.5 * jnp.sum(eps**2 + LOG_2PI + logvar, axis=-1)
    return jax.nn.logsumexp(log_px + log_pz - log_qz, axis=0) - jnp.log(k)


class Task(BaseTask):
    """Options: beta (weight of the KL term; 1 = the ELBO), binarize (dynamic binarization of the [0, 1] inputs)."""

    batch_keys = ("input",)

    def __init__(self, *, beta: float = 1.0, binarize: bool = True):
        super().__init__()
        if not beta >= 0:
            raise ValueError(f"config.task.beta={beta} must be >= 0")
        self.beta, self.binarize = float(beta), bool(binarize)

    def check_batch(self, batch: dict) -> None:
        from jaxdl.models.generative._conv import check_images

        check_images(batch["input"], batch["input"].shape[1:], "vae batch 'input'")

    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        x = batch["input"].astype(jnp.float32)
        if self.binarize:
            x = jax.random.bernoulli(rngs.sampling(), x).astype(jnp.float32)
        eps = jax.random.normal(rngs.sampling(), (x.shape[0], model.latent))
        log_px, kl = elbo_terms(model, x, eps)
        w = batch["mask"].astype(jnp.float32) if "mask" in batch else jnp.ones_like(kl)
        mean = lambda v: jnp.sum(v * w) / jnp.maximum(w.sum(), 1.0)
        loss = mean(-log_px + self.beta * kl)
        return loss, {"neg_elbo": mean(kl - log_px), "kl": mean(kl), "reconstruction": mean(-log_px)}

    def sample(self, model: nnx.Module, key: jax.Array, n: int, **options) -> jax.Array:
        """n images [n, H, W, C] in [0, 1]: the Bernoulli means σ(decode(z)) of z ~ N(0, I)."""
        if options:
            raise ValueError(f"the vae task's sampler takes no options, got {sorted(options)}")
        return jax.nn.sigmoid(model.decode(jax.random.normal(key, (n, model.latent))))

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="elbo"), "reconstruction": dict(kind="reconstruction")}
