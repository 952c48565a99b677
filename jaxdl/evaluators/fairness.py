"""Bias audit of a rating model (MovieLens: users' gender and age bands): per-group error, accuracy and calibration
of the predicted ratings, and the fairness gaps between groups.

    config.evals.audit = dict(kind="fairness", group="gender")           # or group="age_band" / "occupation"

Predictions r̂ = clip(model(user, item=..., train=False), 1, 5) against the true ratings r over every example of
the split; a rating is a "like" when ≥ `threshold` (default 4), so the binary metrics read (like, predicted like).
Per group g (metric `<name>/<g>`): count, rmse, mae, accuracy (of like), selection_rate (P(predicted like)), tpr,
fpr, calibration (mean r̂ - mean r). Gaps: `demographic_parity_difference` (max - min selection rate, fairlearn's
definition), `equalized_odds_difference` (max of the TPR and FPR ranges), `rmse_gap`, `accuracy_gap`,
`calibration_gap` (max - min over the groups). tests/test_fairness.py checks each against fairlearn's MetricFrame.
"""

import jax
import numpy as np
from flax import nnx

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator

GROUPS = ("gender", "age_band", "occupation")
GENDER_NAMES = ("F", "M")  # jaxdl.data.movielens: gender 0 F, 1 M
AGE_BANDS = (18, 25, 35, 45, 56)  # MovieLens-1M's bands: <18, 18-24, 25-34, 35-44, 45-55, 56+


def age_band_names(edges=AGE_BANDS) -> list[str]:
    inner = [f"{a}-{b - 1}" for a, b in zip(edges, edges[1:], strict=False)]
    return [f"<{edges[0]}", *inner, f"{edges[-1]}+"]


def group_labels(batch_values: np.ndarray, group: str) -> np.ndarray:
    """Group names (str [n]) of the raw batch values of `group` (gender 0/1, age in years, occupation index)."""
    if group == "gender":
        return np.asarray(GENDER_NAMES)[batch_values]
    if group == "age_band":
        return np.asarray(age_band_names())[np.searchsorted(AGE_BANDS, batch_values, side="right")]
    if group == "occupation":
        from jaxdl.data.movielens import OCCUPATIONS

        return np.asarray(OCCUPATIONS)[batch_values]
    raise ValueError(f"group={group!r} is not one of {GROUPS}")


def _rate(num: np.ndarray, den: np.ndarray) -> float:
    return float(num.sum() / den.sum()) if den.sum() else float("nan")


def audit(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, threshold: float = 4.0) -> dict[str, float]:
    """Per-group metrics and gaps (module docstring) of float ratings y_true, y_pred [n] and group names [n]."""
    like, pred_like = y_true >= threshold, y_pred >= threshold
    per: dict[str, dict[str, float]] = {}
    for g in sorted(set(groups.tolist())):
        m = groups == g
        err = y_pred[m] - y_true[m]
        per[g] = {
            "count": float(m.sum()),
            "rmse": float(np.sqrt(np.mean(err**2))),
            "mae": float(np.mean(np.abs(err))),
            "accuracy": float(np.mean(like[m] == pred_like[m])),
            "selection_rate": float(np.mean(pred_like[m])),
            "tpr": _rate(pred_like[m] & like[m], like[m]),
            "fpr": _rate(pred_like[m] & ~like[m], ~like[m]),
            "calibration": float(np.mean(err)),
        }
    out = {f"{k}/{g}": v for g, metrics in per.items() for k, v in metrics.items()}
    spread = lambda k: float(max(p[k] for p in per.values()) - min(p[k] for p in per.values()))
    out["demographic_parity_difference"] = spread("selection_rate")
    out["equalized_odds_difference"] = max(spread("tpr"), spread("fpr"))
    for k in ("rmse", "accuracy", "calibration"):
        out[f"{k}_gap"] = spread(k)
    return out


class Evaluator(BaseEvaluator):
    """Options: `group` (one of GROUPS: a batch key of `jaxdl.data.movielens.rating_preprocess`, age banded),
    `threshold` (like ⇔ rating ≥ threshold), `clip_min`/`clip_max`, `batch_size`."""

    def __init__(
        self,
        ctx: Context,
        *,
        group: str = "gender",
        threshold: float = 4.0,
        clip_min: float = 1.0,
        clip_max: float = 5.0,
        batch_size: int = 0,
        **common,
    ):
        super().__init__(ctx, **common)
        if group not in GROUPS:
            raise ValueError(f"group={group!r} is not a group column of this audit; use one of {GROUPS}")
        if not clip_min <= threshold <= clip_max:
            raise ValueError(f"threshold={threshold} must lie in [clip_min, clip_max] = [{clip_min}, {clip_max}]")
        self.group, self.threshold = group, threshold
        self.batch_size = batch_size or ctx.config.data.eval_batch_size
        self.key = "age" if group == "age_band" else group
        task, graphdef = ctx.task, ctx.graphdef

        def predict(params, rest, batch):
            with ctx.trace_context():
                model = nnx.merge(graphdef, params, rest)
                pred = model(batch["input"], train=False, **task.model_inputs(batch))
                return jax.numpy.clip(pred.astype(jax.numpy.float32), clip_min, clip_max)

        self._predict = jax.jit(predict, in_shardings=(ctx.param_sharding, ctx.rest_sharding, ctx.batch_sharding))

    def predictions(self, params, rest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(true ratings, predicted ratings, group names) over the split, padding rows dropped."""
        ys, ps, gs = [], [], []
        for batch in self.ctx.batches(self.split, self.batch_size):
            if self.key not in batch:
                raise ValueError(
                    f"group={self.group!r}: the batches of config.data.name={self.ctx.config.data.name!r} have no "
                    f"{self.key!r} column (they have {sorted(batch)})"
                )
            pred = self._predict(params, rest, batch)
            keep = np.asarray(jax.device_get(batch["mask"])) > 0
            ys.append(np.asarray(jax.device_get(batch["label"]))[keep])
            ps.append(np.asarray(jax.device_get(pred))[keep])
            gs.append(group_labels(np.asarray(jax.device_get(batch[self.key]))[keep], self.group))
        return np.concatenate(ys), np.concatenate(ps), np.concatenate(gs)

    def run(self, params, rest) -> dict[str, float]:
        return audit(*self.predictions(params, rest), threshold=self.threshold)
