"""Weight sparsity of the model (`config.evals.sparsity = dict(kind="sparsity")`): the fraction of exact zeros
of every leaf that `config.optim.prune.params` names (default: the kernels), per leaf and in total — the report of
a run trained with `config.optim.prune` (gradual magnitude pruning). Reads no data.

Metrics: `total` and one `<leaf path>` (e.g. `conv1/kernel`) per pruned leaf, each a sparsity in [0, 1]. When the
run has a workdir, the full report (size / zeros / sparsity per leaf) is also written to
`<workdir>/sparsity.json` (overwritten at every evaluation, so the file holds the last one: the end of training).
"""

import json
import os

import jax

from jaxdl.compress.prune import sparsity_report
from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator
from jaxdl.optim import prune_selector


class Evaluator(BaseEvaluator):
    def __init__(self, ctx: Context, *, params: str = "", **common):
        """`params`: comma-separated leaf names to report (default: `config.optim.prune.params`)."""
        super().__init__(ctx, **common)
        self.select = prune_selector(params or ctx.config.optim.prune.params)

    def run(self, params, rest) -> dict[str, float]:
        del rest
        report = sparsity_report(params, self.select)
        if not report["total"]["size"]:
            raise ValueError("sparsity evaluator: no parameter leaf matches the names it reports (params=...)")
        if self.ctx.workdir and jax.process_index() == 0:
            with open(os.path.join(self.ctx.workdir, "sparsity.json"), "w") as f:
                json.dump(report, f, indent=1)
        return {name: r["sparsity"] for name, r in report.items()}
