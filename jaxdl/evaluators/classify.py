"""Accuracy and cross-entropy over every example of a split: `model(input, train=False, **model_inputs)` logits
against `label` (labels < 0 and padding rows ignored), summed on device, one host sync per evaluation."""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator
from jaxdl.losses import xent_sums


def make_eval_step(graphdef, task=None):
    """(params, rest, batch) -> {loss_sum, correct, count} of the eval logits (not jitted)."""
    if task is None:
        from jaxdl import tasks

        task = tasks.get_class("classify")()

    def eval_step(params, rest, batch):
        model = nnx.merge(graphdef, params, rest)
        logits = model(batch["input"], train=False, **task.model_inputs(batch))
        loss_sum, correct, count = xent_sums(logits, batch["label"], batch["mask"])
        return {"loss_sum": loss_sum, "correct": correct, "count": count}

    return eval_step


class Evaluator(BaseEvaluator):
    """Metrics: accuracy, loss (mean over the valid labels). `batch_size` default: `config.data.eval_batch_size`."""

    def __init__(self, ctx: Context, *, batch_size: int = 0, **common):
        super().__init__(ctx, **common)
        self.batch_size = batch_size or ctx.config.data.eval_batch_size
        from jax.sharding import NamedSharding, PartitionSpec

        step = make_eval_step(ctx.graphdef, ctx.task)

        def traced(*args):
            with ctx.trace_context():
                return step(*args)

        self._step = jax.jit(
            traced,
            in_shardings=(ctx.param_sharding, ctx.rest_sharding, ctx.batch_sharding),
            out_shardings=NamedSharding(ctx.mesh, PartitionSpec()),
        )

    def sums(self, params, rest) -> dict[str, float]:
        sums = None
        for batch in self.ctx.batches(self.split, self.batch_size):
            out = self._step(params, rest, batch)
            sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
        return jax.device_get(sums)

    def run(self, params, rest) -> dict[str, float]:
        s = self.sums(params, rest)
        return {"accuracy": float(s["correct"] / s["count"]), "loss": float(s["loss_sum"] / s["count"])}
