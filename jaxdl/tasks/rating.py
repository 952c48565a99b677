"""Explicit rating regression (MovieLens u1..u5 folds): loss = mean over the batch of w·(r_hat - r)^2 +
`reg` * model.l2(user, item) (Surprise's SVD objective: squared error plus L2 on the biases and factors each
rating uses; w = 1 unless reweighted). Batches: "input" user int32 [B], "item" int32 [B], "label" rating float32
[B]; other keys (side features) go to the model. Metrics: loss, mse (unweighted). Default evaluator: `rating`
(RMSE, MAE on config.data.eval_split). Models: `jaxdl.models.recsys` (mf).

Fairness mitigation by reweighting (`reweight_by`, one of the users' group columns of the `fairness` evaluator:
gender, age_band, occupation), with weights computed once from the training split `dataset`/`split`:
  - group_weights="inverse_frequency": w_g = N / (G·n_g) (G groups present; mean weight 1 over the training set),
    so every group carries the same total weight in the loss;
  - group_weights="kamiran_calders": reweighing (Kamiran & Calders 2012, "Data preprocessing techniques for
    classification without discrimination") with the rating value r ∈ {1..5} as the outcome:
    w(g, r) = P(g)·P(r) / P(g, r), which makes group and rating independent in the weighted training set.
The per-example weight is looked up in the step from the batch's group column (float32 table [G, 5]); the loss is
mean(w·err²) (an unbiased estimate of the reweighted risk, since the weights average 1 over the training set).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.evaluators import fairness
from jaxdl.tasks._host_data import split_columns
from jaxdl.tasks.base import Task as BaseTask

GROUP_WEIGHTS = ("inverse_frequency", "kamiran_calders")
RATINGS = 5  # rating values 1..5


def group_codes(values, group: str, xp=np):
    """int [n] group index of the raw batch column of `group` (gender 0/1; age in years -> band index of
    `fairness.AGE_BANDS`; occupation index); `xp` is numpy or jax.numpy."""
    if group == "age_band":
        return xp.searchsorted(xp.asarray(fairness.AGE_BANDS), values, side="right")
    return values


def num_groups(group: str) -> int:
    if group == "gender":
        return len(fairness.GENDER_NAMES)
    if group == "age_band":
        return len(fairness.AGE_BANDS) + 1
    from jaxdl.data.movielens import OCCUPATIONS

    return len(OCCUPATIONS)


def column_of(group: str) -> str:
    """The batch key holding `group`'s raw values."""
    return "age" if group == "age_band" else group


def weight_table(codes: np.ndarray, ratings: np.ndarray, groups: int, kind: str) -> np.ndarray:
    """float32 [groups, 5] weight of (group g, rating r) from the training examples' group codes and ratings [N]."""
    r = np.rint(ratings).astype(np.int64) - 1
    if np.any((r < 0) | (r >= RATINGS)) or not np.allclose(ratings, r + 1):
        raise ValueError("group reweighting needs integer ratings in 1..5 (kamiran_calders uses them as the outcome)")
    n = len(codes)
    joint = np.zeros((groups, RATINGS))
    np.add.at(joint, (codes, r), 1.0)
    n_g = joint.sum(1)
    if kind == "inverse_frequency":
        present = n_g > 0
        w = np.where(present, n / (present.sum() * np.maximum(n_g, 1)), 1.0)
        return np.repeat(w[:, None], RATINGS, 1).astype(np.float32)
    p_g, p_r, p_gr = n_g / n, joint.sum(0) / n, joint / n
    return np.where(p_gr > 0, np.outer(p_g, p_r) / np.maximum(p_gr, 1e-300), 1.0).astype(np.float32)


class Task(BaseTask):
    batch_keys = ("input", "item", "label")

    def __init__(
        self,
        reg: float = 0.02,
        reweight_by: str = "",
        group_weights: str = "inverse_frequency",
        dataset: str = "",
        split: str = "train",
        data_dir: str = "",
    ):
        if reg < 0:
            raise ValueError(f"config.task.reg={reg} must be >= 0")
        if reweight_by and reweight_by not in fairness.GROUPS:
            raise ValueError(
                f"config.task.reweight_by={reweight_by!r} is not a group column; the rating batches' group columns "
                f"are {fairness.GROUPS}"
            )
        if group_weights not in GROUP_WEIGHTS:
            raise ValueError(f"config.task.group_weights={group_weights!r} is not one of {GROUP_WEIGHTS}")
        if reweight_by and not dataset:
            raise ValueError(
                f"config.task.dataset is required with reweight_by={reweight_by!r}: the training split the group "
                "weights are counted on (e.g. movielens_u1)"
            )
        self.reg, self.reweight_by, self.group_weights = reg, reweight_by, group_weights
        self.dataset, self.split, self.data_dir = dataset, split, data_dir
        self._table: np.ndarray | None = None
        if reweight_by:
            self.batch_keys = (*self.batch_keys, column_of(reweight_by))

    @property
    def table(self) -> np.ndarray:
        """float32 [G, 5]: the weight of (group, rating), counted on the training split (loaded on first use)."""
        if self._table is None:
            columns = split_columns(self.dataset, self.split, self.data_dir)
            column = column_of(self.reweight_by)
            if column not in columns:
                raise ValueError(
                    f"config.task.reweight_by={self.reweight_by!r}: dataset {self.dataset!r} has no column {column!r} "
                    f"(its batch keys: {sorted(columns)})"
                )
            codes = group_codes(np.asarray(columns[column]), self.reweight_by)
            self._table = weight_table(codes, columns["label"], num_groups(self.reweight_by), self.group_weights)
        return self._table

    def weights(self, batch: dict) -> jax.Array:
        """float32 [B]: each rating's weight (1 without reweighting)."""
        if not self.reweight_by:
            return jnp.ones_like(batch["label"])
        column = column_of(self.reweight_by)
        if column not in batch:
            raise ValueError(f"config.task.reweight_by={self.reweight_by!r}: the batch has no {column!r} column")
        g = group_codes(batch[column], self.reweight_by, jnp)
        r = jnp.clip(jnp.rint(batch["label"]).astype(jnp.int32) - 1, 0, RATINGS - 1)
        return jnp.asarray(self.table)[g, r]

    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        pred = model(batch["input"], train=True, rngs=rngs, **self.model_inputs(batch))
        err2 = (pred - batch["label"]) ** 2
        mse = jnp.mean(err2)
        fit = jnp.mean(self.weights(batch) * err2) if self.reweight_by else mse
        l2 = jnp.mean(model.l2(batch["input"], batch["item"][:, None])) if self.reg else 0.0
        return fit + self.reg * l2, {"mse": mse} | ({"weighted_mse": fit} if self.reweight_by else {})

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="rating")}
