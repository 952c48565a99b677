"""The `fairness` evaluator's bias audit (jaxdl.evaluators.fairness) against fairlearn's MetricFrame, on MovieLens-100k
fold u1 with users' gender and age bands, and end to end in the trainer."""

import jax
import ml_collections
import numpy as np
import pytest

from jaxdl import config as config_lib
from jaxdl.evaluators import fairness

fairlearn_metrics = pytest.importorskip("fairlearn.metrics", reason="fairlearn is a test dependency ([test] extra)")


@pytest.fixture(scope="module")
def fold():
    """(true ratings, predictions, per-row user gender and age) of fold u1's test split; the predictor is each
    user's mean train rating shrunk to the global mean (a real, group-dependent baseline, no jaxdl model)."""
    from jaxdl.data import movielens as ml

    try:
        ml.raw_dir()
    except FileNotFoundError as e:
        pytest.skip(f"MovieLens-100k is not installed: {e}")
    raw = ml.load_raw()
    train, test = ml.rating_fold(raw, 1)
    mu = raw.rating[train].mean()
    sums = np.bincount(raw.user[train], raw.rating[train], 943)
    counts = np.bincount(raw.user[train], minlength=943)
    user_mean = (sums + 5 * mu) / (counts + 5)
    users = raw.user[test]
    return raw.rating[test].astype(np.float64), user_mean[users], raw.gender[users], raw.age[users]


@pytest.mark.parametrize("group", ["gender", "age_band"])
def test_audit_equals_fairlearn_metricframe(fold, group):
    from sklearn.metrics import accuracy_score, mean_absolute_error, mean_squared_error, recall_score

    y, pred, gender, age = fold
    names = fairness.group_labels(gender if group == "gender" else age, group)
    ours = fairness.audit(y, pred, names, threshold=4.0)
    like, pred_like = y >= 4, pred >= 4
    frame = fairlearn_metrics.MetricFrame(
        metrics={
            "accuracy": accuracy_score,
            "selection_rate": fairlearn_metrics.selection_rate,
            "tpr": fairlearn_metrics.true_positive_rate,
            "fpr": fairlearn_metrics.false_positive_rate,
            "count": fairlearn_metrics.count,
        },
        y_true=like,
        y_pred=pred_like,
        sensitive_features=names,
    )
    errors = fairlearn_metrics.MetricFrame(
        metrics={"rmse": lambda t, p: np.sqrt(mean_squared_error(t, p)), "mae": mean_absolute_error},
        y_true=y,
        y_pred=pred,
        sensitive_features=names,
    )
    assert len(frame.by_group) >= 2
    for g, row in frame.by_group.iterrows():
        for metric in ("accuracy", "selection_rate", "tpr", "fpr", "count"):
            assert ours[f"{metric}/{g}"] == pytest.approx(row[metric], abs=1e-12), (metric, g)
        for metric in ("rmse", "mae"):
            assert ours[f"{metric}/{g}"] == pytest.approx(errors.by_group.loc[g, metric], rel=1e-12)
    dp = fairlearn_metrics.demographic_parity_difference(like, pred_like, sensitive_features=names)
    eo = fairlearn_metrics.equalized_odds_difference(like, pred_like, sensitive_features=names)
    assert ours["demographic_parity_difference"] == pytest.approx(dp, abs=1e-12)
    assert ours["equalized_odds_difference"] == pytest.approx(eo, abs=1e-12)
    assert ours["accuracy_gap"] == pytest.approx(frame.difference()["accuracy"], abs=1e-12)
    assert ours["rmse_gap"] == pytest.approx(errors.difference()["rmse"], abs=1e-12)
    assert recall_score(like, pred_like) > 0  # the baseline predicts some likes: the binary metrics are non-trivial


def mf_config(data_dir, **audit):
    c = config_lib.base()
    c.data.name, c.data.data_dir = "movielens_u1", data_dir
    c.data.batch_size, c.data.eval_batch_size = 1000, 5000
    c.model = ml_collections.ConfigDict(dict(name="mf", num_users=943, dim=8, global_mean=3.53))
    c.task = ml_collections.ConfigDict(dict(name="rating"))
    c.evals = ml_collections.ConfigDict({"main": dict(kind="rating"), "audit": dict(kind="fairness", **audit)})
    c.optim.name, c.optim.lr = "adam", 1e-2
    c.train.steps, c.train.log_every = 40, 40
    c.train.eval_every = c.train.checkpoint_every = 0
    c.train.progress = False
    return c


@pytest.mark.slow
def test_audit_in_the_trainer(fold, data_dir, tmp_path):
    from jaxdl.train import train_and_evaluate

    final = train_and_evaluate(mf_config(data_dir, group="gender"), str(tmp_path), devices=jax.devices()[:1])
    assert final["eval/audit/count/F"] + final["eval/audit/count/M"] == 20000  # u1.test
    assert final["eval/audit/count/F"] == pytest.approx(float(np.sum(fold[2] == 0)))
    for k in ("demographic_parity_difference", "equalized_odds_difference", "rmse_gap", "calibration_gap"):
        assert 0 <= final[f"eval/audit/{k}"] <= 5
    rmse = [final[f"eval/audit/rmse/{g}"] for g in ("F", "M")]  # the overall RMSE lies between the groups'
    assert min(rmse) <= final["eval/rmse"] + 1e-6 and final["eval/rmse"] <= max(rmse) + 1e-6


@pytest.mark.parametrize(
    "audit,message",
    [
        (dict(group="race"), r"config.evals.audit: group='race' is not a group column"),
        (dict(group="gender", threshold=6.0), r"config.evals.audit: threshold=6.0 must lie in"),
    ],
)
def test_bad_group_fails_naming_the_key(data_dir, audit, message):
    """Refused when the evaluators are made (before any data is read or model built)."""
    from jaxdl import evaluators

    c = config_lib.validate(mf_config(data_dir, **audit))
    ctx = evaluators.Context(c, None, None, {}, None, None, None, None, None)
    with pytest.raises(ValueError, match=message):
        evaluators.make_all({"audit": c.evals.audit.to_dict()}, ctx)
