"""Recommender metrics as plain numpy functions of scores (shared by the `ranking` and `rating` evaluators, the
study scripts and `jaxdl.recommend`).

Ranks are 0-based and pessimistic: rank = #(other candidates scoring > the positive) + #(other candidates scoring
== the positive), so a model that scores everything alike gets the worst rank, never the best. With rank r:
HR@K = [r < K], NDCG@K = [r < K] / log2(r + 2) (one relevant item, so IDCG = 1), MRR = 1 / (r + 1) (uncut).
"""

import numpy as np


def ranks(scores: np.ndarray, positive: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """int64 [B]: the rank of column `positive[b]` among the valid columns of `scores[b]`.

    scores float [B, C]; positive int [B] (column index of the relevant item); valid bool [B, C] or None (all
    valid): columns to rank against (the positive's own column counts as valid whatever `valid` says)."""
    scores = np.asarray(scores, np.float64)
    b = np.arange(scores.shape[0])
    pos = scores[b, positive][:, None]
    other = np.ones(scores.shape, bool) if valid is None else np.asarray(valid, bool).copy()
    other[b, positive] = False
    if np.isnan(scores[other]).any() or np.isnan(pos).any():
        raise ValueError("scores hold NaN: ranks are undefined")
    return ((scores >= pos) & other).sum(axis=1)


def hit_rate(r: np.ndarray, k: int) -> np.ndarray:
    """float64 [B]: 1 where rank < k."""
    return (np.asarray(r) < k).astype(np.float64)


def ndcg(r: np.ndarray, k: int) -> np.ndarray:
    """float64 [B]: 1 / log2(rank + 2) where rank < k, else 0 (one relevant item per row)."""
    r = np.asarray(r)
    return np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)


def mrr(r: np.ndarray) -> np.ndarray:
    """float64 [B]: 1 / (rank + 1)."""
    return 1.0 / (np.asarray(r) + 1.0)


def top_k(scores: np.ndarray, k: int, valid: np.ndarray | None = None) -> np.ndarray:
    """int64 [B, k]: the columns of the k highest valid scores per row, best first (ties: lower column first)."""
    s = np.where(np.ones_like(scores, bool) if valid is None else valid, scores, -np.inf)
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def coverage(top: np.ndarray, num_items: int) -> float:
    """Catalogue coverage: the fraction of the `num_items` items recommended in at least one top-K list.
    top int [B, K] item ids."""
    return len(np.unique(np.asarray(top))) / num_items


def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - target) ** 2)))


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(pred, np.float64) - target)))
