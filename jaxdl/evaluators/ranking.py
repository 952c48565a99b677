"""Top-K ranking metrics of a recommender over every example of a split (one held-out positive item per row):
HR@K, NDCG@K and MRR, both sampled (the positive among the row's 99 stored negatives, He et al. 2017) and over
the full catalogue (Krichene & Rendle 2020: every item except those the row's `seen` bits exclude, e.g. the
user's training items), plus catalogue coverage@K of the full-ranking top-K lists.

Batches (e.g. `movielens_loo` valid/test): "input" user int32 [B], "label" positive item int32 [B], "negatives"
int32 [B, 99], "seen" uint8 [B, ceil(N/8)] (np.packbits of the excluded items), other model inputs (history, side
features). The model must define `score(user, items, **inputs) -> float32 [B, C]` and
`score_all(user, **inputs) -> float32 [B, N]` (see `jaxdl.models.recsys`). Scores come to the host; ranks follow
`jaxdl.evaluators._recsys_metrics` (ties count against the positive).

Metrics for each k in `ks`: hr{k}_sampled, ndcg{k}_sampled, hr{k}_full, ndcg{k}_full, coverage{k}; and
mrr_sampled, mrr_full (each only when `sampled` / `full` is on).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.evaluators import _recsys_metrics as M
from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator


class Evaluator(BaseEvaluator):
    def __init__(
        self, ctx: Context, *, ks: tuple = (10,), batch_size: int = 0, sampled: bool = True, full: bool = True, **common
    ):
        super().__init__(ctx, **common)
        self.ks, self.sampled, self.full = tuple(int(k) for k in ks), sampled, full
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks={ks} must be positive integers")
        if not (sampled or full):
            raise ValueError("sampled=False and full=False: nothing to evaluate")
        self.batch_size = batch_size or ctx.config.data.eval_batch_size
        task, graphdef = ctx.task, ctx.graphdef

        def scores(params, rest, batch):
            model = nnx.merge(graphdef, params, rest)
            inputs = task.model_inputs(batch)
            out = {}
            if sampled:
                candidates = jnp.concatenate([batch["label"][:, None], batch["negatives"]], axis=1)
                out["sampled"] = model.score(batch["input"], candidates, **inputs)
            if full:
                out["full"] = model.score_all(batch["input"], **inputs)
            return out

        def traced(*args):
            with ctx.trace_context():
                return scores(*args)

        self._scores = jax.jit(traced, in_shardings=(ctx.param_sharding, ctx.rest_sharding, ctx.batch_sharding))

    def run(self, params, rest) -> dict[str, float]:
        ranks = {"sampled": [], "full": []}
        tops = []
        for batch in self.ctx.batches(self.split, self.batch_size):
            host = jax.device_get({k: batch[k] for k in ("mask", "label", "negatives", "seen")})
            keep = host["mask"] > 0
            if self.sampled and (host["negatives"][keep] < 0).any():
                raise ValueError(
                    f"split {self.split!r} has rows without sampled negatives (-1): use a valid/test split"
                )
            out = jax.device_get(self._scores(params, rest, batch))
            if self.sampled:
                s = out["sampled"][keep]
                ranks["sampled"].append(M.ranks(s, np.zeros(len(s), np.int64)))
            if self.full:
                s = out["full"][keep]
                seen = np.unpackbits(host["seen"][keep], axis=1, count=s.shape[1]).astype(bool)
                label = host["label"][keep]
                ranks["full"].append(M.ranks(s, label, ~seen))
                tops.append(M.top_k(s, max(self.ks), ~seen))
        metrics = {}
        for kind, parts in ranks.items():
            if not parts:
                continue
            r = np.concatenate(parts)
            for k in self.ks:
                metrics[f"hr{k}_{kind}"] = float(M.hit_rate(r, k).mean())
                metrics[f"ndcg{k}_{kind}"] = float(M.ndcg(r, k).mean())
            metrics[f"mrr_{kind}"] = float(M.mrr(r).mean())
        if tops:
            top = np.concatenate(tops)
            num_items = self.ctx.ds_info["num_classes"]
            for k in self.ks:
                metrics[f"coverage{k}"] = M.coverage(top[:, :k], num_items)
        return metrics
