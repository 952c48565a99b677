"""Likelihood bounds of a VAE run (`jaxdl.tasks.vae`) on a split binarized once with a fixed key (stochastic
binarization, x ~ Bernoulli(pixel), key `seed` folded with the batch index, so every evaluation sees the same
binary images): `neg_elbo` (-ELBO, one posterior sample), `kl`, `reconstruction` (-log p(x|z)) and `iw_nll`
(-log p̂(x) from the importance-weighted bound with `importance_samples` samples of q(z|x), Burda et al. 2016),
all in nats per image; `iw_bits_per_dim` = iw_nll / (ln 2 · pixels). iw_nll <= neg_elbo in expectation."""

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator
from jaxdl.tasks.vae import elbo_terms, iw_log_likelihood


class Evaluator(BaseEvaluator):
    def __init__(self, ctx: Context, *, batch_size: int = 200, importance_samples: int = 100, seed: int = 0, **common):
        super().__init__(ctx, **common)
        if importance_samples < 1:
            raise ValueError(f"importance_samples={importance_samples} must be >= 1")
        self.batch_size = batch_size
        key = jax.random.key(seed)

        def step(params, rest, batch, index):
            k = jax.random.fold_in(key, index)
            x = jax.random.bernoulli(jax.random.fold_in(k, 0), batch["input"]).astype(jnp.float32)
            with ctx.trace_context():
                model = nnx.merge(ctx.graphdef, params, rest)
                eps = jax.random.normal(jax.random.fold_in(k, 1), (x.shape[0], model.latent))
                log_px, kl = elbo_terms(model, x, eps)
                iw = iw_log_likelihood(model, x, jax.random.fold_in(k, 2), importance_samples)
            w = batch["mask"].astype(jnp.float32)
            s = lambda v: jnp.sum(v * w)
            return {"neg_elbo": s(kl - log_px), "kl": s(kl), "reconstruction": s(-log_px), "iw_nll": s(-iw), "n": s(1)}

        self._eval = jax.jit(
            step,
            in_shardings=(ctx.param_sharding, ctx.rest_sharding, ctx.batch_sharding, None),
            out_shardings=NamedSharding(ctx.mesh, PartitionSpec()),
        )
        self.pixels = math.prod(ctx.ds_info["input_shape"])

    def run(self, params, rest) -> dict[str, float]:
        sums = None
        for i, batch in enumerate(self.ctx.batches(self.split, self.batch_size)):
            out = self._eval(params, rest, batch, jnp.int32(i))
            sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
        sums = jax.device_get(sums)
        out = {k: float(v / sums["n"]) for k, v in sums.items() if k != "n"}
        out["iw_bits_per_dim"] = out["iw_nll"] / (math.log(2.0) * self.pixels)
        return out
