"""Reconstruction error of an autoencoding model (`model(x)` -> pixel logits [b, H, W, C]; `conv_ae`, and `vae`
through its posterior mean) over a split: `bce` (binary cross-entropy summed over pixels, nats per image, against
the [0, 1] intensities) and `mse` (per pixel, of σ(logits)). Writes a PNG of the first 50 images of the split
(rows of originals above their reconstructions) to `<workdir>/samples/<name>_step<step>.png`."""

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxdl.evaluators._images import save_grid
from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator
from jaxdl.tasks.autoencode import reconstruction_losses


class Evaluator(BaseEvaluator):
    def __init__(self, ctx: Context, *, batch_size: int = 0, name: str = "reconstruction", **common):
        super().__init__(ctx, **common)
        self.batch_size = batch_size or ctx.config.data.eval_batch_size
        self.name, self._step = name, 0

        def step(params, rest, batch):
            with ctx.trace_context():
                logits = nnx.merge(ctx.graphdef, params, rest)(batch["input"], train=False)
            bce, mse = reconstruction_losses(logits, batch["input"])
            w = batch["mask"].astype(jnp.float32)
            sums = {"bce": jnp.sum(bce * w), "mse": jnp.sum(mse * w), "count": jnp.sum(w)}
            return sums, jax.nn.sigmoid(logits[:50])

        replicated = NamedSharding(ctx.mesh, PartitionSpec())
        self._eval = jax.jit(
            step,
            in_shardings=(ctx.param_sharding, ctx.rest_sharding, ctx.batch_sharding),
            out_shardings=(replicated, replicated),
        )

    def evaluate(self, state: dict) -> dict[str, float]:
        self._step = int(jax.device_get(state["step"]))
        return super().evaluate(state)

    def run(self, params, rest) -> dict[str, float]:
        sums, first = None, None
        for batch in self.ctx.batches(self.split, self.batch_size):
            out, recon = self._eval(params, rest, batch)
            if first is None:
                n = min(50, int(np.sum(np.asarray(batch["mask"]))), recon.shape[0])
                first = (np.asarray(batch["input"][:n]), np.asarray(recon[:n]))
            sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
        sums = jax.device_get(sums)
        if self.ctx.workdir and first is not None:
            x, r = first
            rows = [im for i in range(0, len(x), 10) for im in (x[i : i + 10], r[i : i + 10])]
            path = os.path.join(self.ctx.workdir, "samples", f"{self.name}_step{self._step}.png")
            save_grid(np.concatenate(rows), path)
        return {"bce": float(sums["bce"] / sums["count"]), "mse": float(sums["mse"] / sums["count"])}
