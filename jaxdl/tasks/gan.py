"""GAN training (Goodfellow et al. 2014) with the non-saturating generator loss, alternating discriminator and
generator updates inside one jitted step: the task's parameter groups `generator` and `discriminator` (each with
its own optimizer, `config.optim_groups.<group>`) and two phases, D then G (the G phase sees the just-updated D).
Model: `jaxdl.models.generative.dcgan` (`generator(z, train)` -> images in [0, 1], `discriminator(x)` -> logits).

    D phase: mean softplus(-D(x)) + mean softplus(D(G(z)))  [+ r1_gamma/2 · mean ||∇_x D(x)||² (Mescheder et al.
             2018's R1 penalty on real data)], G's output detached (and G's parameters are not in the phase)
    G phase: mean softplus(-D(G(z)))   (the non-saturating loss: -log D(G(z)))
Metrics: train/d/loss, train/d/real_prob, train/d/fake_prob, train/g/loss. Sampling: G(z), z ~ N(0, I), with the
generator's normalization in evaluation mode.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.tasks.base import Phase
from jaxdl.tasks.base import Task as BaseTask


class Task(BaseTask):
    """Options: r1_gamma (weight of the R1 gradient penalty on real images; 0 = off)."""

    groups = ("generator", "discriminator")
    batch_keys = ("input",)

    def __init__(self, *, r1_gamma: float = 0.0):
        super().__init__()
        if not r1_gamma >= 0:
            raise ValueError(f"config.task.r1_gamma={r1_gamma} must be >= 0")
        self.r1_gamma = float(r1_gamma)

    def check_batch(self, batch: dict) -> None:
        from jaxdl.models.generative._conv import check_images

        check_images(batch["input"], batch["input"].shape[1:], "gan batch 'input'")

    def d_loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        x = batch["input"].astype(jnp.float32)
        z = jax.random.normal(rngs.sampling(), (x.shape[0], model.generator.latent))
        fake = jax.lax.stop_gradient(model.generator(z, train=True))
        real_logits, fake_logits = model.discriminator(x), model.discriminator(fake)
        loss = jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))
        metrics = {
            "real_prob": jnp.mean(jax.nn.sigmoid(real_logits)),
            "fake_prob": jnp.mean(jax.nn.sigmoid(fake_logits)),
        }
        if self.r1_gamma:
            grad = jax.grad(lambda v: jnp.sum(model.discriminator(v)))(x)
            r1 = jnp.mean(jnp.sum(grad**2, axis=tuple(range(1, x.ndim))))
            loss, metrics["r1"] = loss + 0.5 * self.r1_gamma * r1, r1
        return loss, metrics

    def g_loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        n = batch["input"].shape[0]
        z = jax.random.normal(rngs.sampling(), (n, model.generator.latent))
        return jnp.mean(jax.nn.softplus(-model.discriminator(model.generator(z, train=True)))), {}

    def phases(self) -> tuple[Phase, ...]:
        return (Phase(self.d_loss, ("discriminator",), "d"), Phase(self.g_loss, ("generator",), "g"))

    def sample(self, model: nnx.Module, key: jax.Array, n: int, **options) -> jax.Array:
        """n images [n, H, W, C] in [0, 1] from G(z), z ~ N(0, I)."""
        if options:
            raise ValueError(f"the gan task's sampler takes no options, got {sorted(options)}")
        return model.generator(jax.random.normal(key, (n, model.generator.latent)), train=False)

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="samples")}
