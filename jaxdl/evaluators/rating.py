"""Rating prediction error over every example of a split: RMSE and MAE of `model(user, item=item, **inputs)`
(float32 [B] predicted ratings, clipped to [`clip_min`, `clip_max`] as Surprise clips to the rating scale; set
both to 0 for no clipping) against "label" (float32 [B] true ratings); padding rows ignored. Sums on device, one
host sync per evaluation. Batches as `jaxdl.data.movielens.rating_preprocess` gives."""

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator


class Evaluator(BaseEvaluator):
    def __init__(self, ctx: Context, *, batch_size: int = 0, clip_min: float = 1.0, clip_max: float = 5.0, **common):
        super().__init__(ctx, **common)
        if clip_min > clip_max:
            raise ValueError(f"clip_min={clip_min} > clip_max={clip_max}")
        self.batch_size = batch_size or ctx.config.data.eval_batch_size
        task, graphdef = ctx.task, ctx.graphdef
        clip = clip_min != clip_max

        def sums(params, rest, batch):
            model = nnx.merge(graphdef, params, rest)
            pred = model(batch["input"], train=False, **task.model_inputs(batch))
            pred = jnp.clip(pred, clip_min, clip_max) if clip else pred
            err = (pred.astype(jnp.float32) - batch["label"]) * batch["mask"]
            return {"sq": jnp.sum(err**2), "abs": jnp.sum(jnp.abs(err)), "count": jnp.sum(batch["mask"])}

        def traced(*args):
            with ctx.trace_context():
                return sums(*args)

        self._step = jax.jit(
            traced,
            in_shardings=(ctx.param_sharding, ctx.rest_sharding, ctx.batch_sharding),
            out_shardings=NamedSharding(ctx.mesh, PartitionSpec()),
        )

    def run(self, params, rest) -> dict[str, float]:
        total = None
        for batch in self.ctx.batches(self.split, self.batch_size):
            out = self._step(params, rest, batch)
            total = out if total is None else jax.tree.map(jnp.add, total, out)
        total = jax.device_get(total)
        return {"rmse": float((total["sq"] / total["count"]) ** 0.5), "mae": float(total["abs"] / total["count"])}
