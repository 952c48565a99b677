"""Autoencoding: a model maps images x [b, H, W, C] in [0, 1] to pixel logits of the same shape; loss = per-pixel
binary cross-entropy against the (continuous) intensities, summed over pixels and averaged over the batch (nats
per image; its minimum is the images' binary entropy, not 0); metric `mse` = mean squared error of σ(logits) per
pixel. Model: `jaxdl.models.generative.conv_ae` (or any module with that call). Default evaluator:
`reconstruction`."""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxdl.tasks.base import Task as BaseTask


def reconstruction_losses(logits: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(binary cross-entropy summed over pixels [b], mean squared error of σ(logits) per pixel [b])."""
    axes = tuple(range(1, x.ndim))
    bce = jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x), axis=axes)
    mse = jnp.mean((jax.nn.sigmoid(logits) - x) ** 2, axis=axes)
    return bce, mse


class Task(BaseTask):
    batch_keys = ("input",)

    def check_batch(self, batch: dict) -> None:
        from jaxdl.models.generative._conv import check_images

        check_images(batch["input"], batch["input"].shape[1:], "autoencode batch 'input'")

    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        x = batch["input"].astype(jnp.float32)
        bce, mse = reconstruction_losses(model(x, train=True, rngs=rngs), x)
        w = batch["mask"].astype(jnp.float32) if "mask" in batch else jnp.ones_like(bce)
        mean = lambda v: jnp.sum(v * w) / jnp.maximum(w.sum(), 1.0)
        return mean(bce), {"mse": mean(mse)}

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="reconstruction")}
