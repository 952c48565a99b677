"""The privacy spent so far by a DP-SGD run: ε at the task's δ after the run's steps, from `dp-accounting`.

    config.evals.privacy = dict(kind="privacy")   # a default evaluator of task dp_classify

Metrics: epsilon, delta, steps, noise_multiplier, sampling_rate (the accountant's inputs, beside its output). At
construction it refuses a run whose sampling is not what the accountant assumes (`jaxdl.privacy.accounting`):
a task that does not draw Poisson batches, microbatched steps (`config.train.grad_accum` > 1 adds the noise per
microbatch), or evaluation data other than the task's (`config.data.name` ≠ `config.task.dataset`).
"""

import jax

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator
from jaxdl.privacy import accounting


class Evaluator(BaseEvaluator):
    def __init__(self, ctx: Context, **common):
        super().__init__(ctx, **common)
        task, config = ctx.task, ctx.config
        if getattr(task, "sampling", None) not in accounting.SAMPLINGS or not task.produces_batches:
            raise ValueError(
                f"kind 'privacy' accounts DP-SGD with Poisson sampling; task {config.task.name!r} does not sample that "
                "way (the loader's shuffled fixed-size batches have no accountant): use config.task.name='dp_classify'"
            )
        if config.train.grad_accum != 1:
            raise ValueError(
                f"config.train.grad_accum={config.train.grad_accum}: DP-SGD accounting assumes one noisy gradient per "
                "Poisson batch; set it to 1"
            )
        if config.data.name and config.data.name != task.dataset:
            raise ValueError(
                f"config.data.name={config.data.name!r} differs from config.task.dataset={task.dataset!r} (the data "
                "DP-SGD trains on): the run would evaluate one dataset and account another"
            )

    def evaluate(self, state: dict) -> dict[str, float]:
        steps = int(jax.device_get(state["step"]))
        t = self.ctx.task
        eps = accounting.epsilon(t.noise_multiplier, t.sampling_rate, steps, t.delta, t.accountant)
        return {
            "epsilon": eps,
            "delta": t.delta,
            "steps": float(steps),
            "noise_multiplier": t.noise_multiplier,
            "sampling_rate": t.sampling_rate,
        }
