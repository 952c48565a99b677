"""Offline A/B comparison of two models on the same replayed traffic: a paired bootstrap confidence interval of the
accuracy difference and an always-valid sequential test that may be checked after every example.

* `replay(model_a, model_b, inputs, labels)`: both models on the same examples in the same order (batched), →
  per-example correctness of each.
* `paired_bootstrap_ci(a, b)`: the percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13) of
  mean(b) - mean(a), resampling *examples* (pairs), so the correlation between the two models' errors on the same
  inputs is kept. The bootstrap mean of n draws from the empirical distribution of d_i = b_i - a_i is drawn exactly
  as a multinomial over d's distinct values (3 of them for correctness), which is the same distribution as index
  resampling at a fraction of the cost.
* `sequential_test(a, b, alpha)`: a mixture sequential probability ratio test (mSPRT; Robbins 1970, "Statistical
  methods related to the law of the iterated logarithm"; Johari, Koomen, Pekelis & Walsh 2022, "Always valid
  inference: continuous monitoring of A/B tests", Operations Research 70(3)) on the discordant pairs (McNemar
  1947): among the examples where exactly one model is right, H0 "equal accuracy" says B is the right one with
  probability 1/2. With a Beta(c, c) mixture over that probability the likelihood ratio after s B-wins and f A-wins
  has the closed form Λ = B(c + s, c + f) / (B(c, c) · 2^-(s+f)), a non-negative martingale with mean 1 under H0,
  so by Ville's inequality P(sup_n Λ_n ≥ 1/α) ≤ α: stopping the first time Λ ≥ 1/α keeps the false-positive rate
  at most α however often one looks (a fixed-n test repeated after every batch does not). The always-valid p-value
  is min(1, 1 / max_k Λ_k).

Inputs are per-example correctness (bool or 0/1) of the two models on the same traffic, in traffic order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import betaln


def _paired(a, b, *, binary: bool) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"expected 1-d per-example outcomes, got shapes {a.shape} and {b.shape}")
    if len(a) != len(b):
        raise ValueError(
            f"mismatched traffic: {len(a)} outcomes for model A and {len(b)} for model B (a paired comparison needs "
            "both models on the same examples)"
        )
    if len(a) == 0:
        raise ValueError("no traffic: both outcome arrays are empty")
    if binary:
        for name, v in (("A", a), ("B", b)):
            if not np.isin(v, (0, 1)).all():
                raise ValueError(f"model {name}: outcomes must be correctness (bool or 0/1), got values {np.unique(v)}")
    return a.astype(np.float64), b.astype(np.float64)


def _check_level(alpha: float, name: str = "alpha") -> float:
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"{name}={alpha} must be in (0, 1)")
    return alpha


def replay(
    model_a: Callable, model_b: Callable, inputs, labels, *, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """(correct_a, correct_b): argmax of each model's logits vs `labels`, both models on the same batches of the
    replayed `inputs`, in order."""
    x, y = np.asarray(inputs), np.asarray(labels)
    if len(x) != len(y):
        raise ValueError(f"mismatched traffic: {len(x)} inputs and {len(y)} labels")
    ca, cb = [], []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        ca.append(np.asarray(model_a(xb)).argmax(-1) == yb)
        cb.append(np.asarray(model_b(xb)).argmax(-1) == yb)
    return np.concatenate(ca), np.concatenate(cb)


def paired_bootstrap_ci(
    a, b, *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean(b) - mean(a), lower, upper): the percentile bootstrap interval at `confidence`, resampling pairs."""
    a, b = _paired(a, b, binary=False)
    level = _check_level(confidence, "confidence")
    if resamples < 100:
        raise ValueError(f"resamples={resamples}: use at least 100 for a percentile interval")
    d = b - a
    values, counts = np.unique(d, return_counts=True)
    n = len(d)
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=resamples)  # [resamples, distinct]
    means = draws @ values / n
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(d.mean()), float(lo), float(hi)


def log_mixture_lr(b_wins: np.ndarray, a_wins: np.ndarray, concentration: float = 1.0) -> np.ndarray:
    """log Λ after s B-wins and f A-wins (elementwise): log B(c + s, c + f) - log B(c, c) + (s + f) log 2."""
    s, f, c = np.asarray(b_wins, np.float64), np.asarray(a_wins, np.float64), float(concentration)
    return betaln(c + s, c + f) - betaln(c, c) + (s + f) * np.log(2.0)


def sequential_test(a, b, *, alpha: float = 0.05, concentration: float = 1.0) -> dict:
    """The mSPRT over the traffic in order. Returns `stopped_at` (the number of examples seen when Λ first reached
    1/α, or None), `decision` ("B better", "A better" or "no difference detected"), `p_value` (always valid, at the
    stop or at the end), the final counts, and each model's accuracy at the stop (or the end)."""
    a, b = _paired(a, b, binary=True)
    alpha = _check_level(alpha)
    if concentration <= 0:
        raise ValueError(f"concentration={concentration} must be > 0 (the Beta(c, c) mixture's parameter)")
    s = np.cumsum((b == 1) & (a == 0))
    f = np.cumsum((a == 1) & (b == 0))
    log_lr = log_mixture_lr(s, f, concentration)
    crossed = np.flatnonzero(log_lr >= -np.log(alpha))
    stop = int(crossed[0]) if len(crossed) else len(a) - 1
    p_value = float(min(1.0, np.exp(-np.max(log_lr[: stop + 1]))))
    decision = "no difference detected"
    if len(crossed):
        decision = "B better" if s[stop] > f[stop] else "A better"
    return {
        "stopped_at": stop + 1 if len(crossed) else None,
        "decision": decision,
        "p_value": p_value,
        "alpha": alpha,
        "b_wins": int(s[stop]),
        "a_wins": int(f[stop]),
        "accuracy_a": float(a[: stop + 1].mean()),
        "accuracy_b": float(b[: stop + 1].mean()),
    }


def compare(a, b, *, alpha: float = 0.05, resamples: int = 10_000, seed: int = 0) -> dict:
    """Both analyses of the same paired correctness: the full-traffic accuracies, the bootstrap interval of the
    difference at 1 - alpha, and the sequential test at level alpha."""
    a, b = _paired(a, b, binary=True)
    diff, lo, hi = paired_bootstrap_ci(a, b, confidence=1 - _check_level(alpha), resamples=resamples, seed=seed)
    return {
        "examples": len(a),
        "accuracy_a": float(a.mean()),
        "accuracy_b": float(b.mean()),
        "difference": diff,
        "bootstrap_ci": [lo, hi],
        "confidence": 1 - alpha,
        "sequential": sequential_test(a, b, alpha=alpha),
    }
