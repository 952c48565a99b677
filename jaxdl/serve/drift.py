"""Drift detection between a reference sample (e.g. the eval split's inputs, or the model's confidences on it) and
a window of live traffic: PSI, the two-sample Kolmogorov–Smirnov test, and MMD with a permutation test; `Monitor`
keeps a sliding window and raises an alert when a detector crosses its threshold. numpy only (runs in the server).

* `psi(ref, cur, bins)`: population stability index Σ (c_i - r_i) ln(c_i / r_i) over the reference's quantile bins
  (proportions floored at `eps`); the usual reading: < 0.1 stable, 0.1–0.25 moderate, > 0.25 significant shift.
* `ks_2samp(a, b)`: D = sup |F_a - F_b| of 1-d samples and its asymptotic p-value (the Kolmogorov distribution at
  sqrt(n m / (n + m)) D, Stephens' small-sample correction); for `[n, features]` inputs, one test per feature
  with a Bonferroni correction (as alibi-detect's KSDrift does).
* `mmd2(x, y, sigma)`: the unbiased MMD² (Gretton et al. 2012) with a Gaussian kernel (bandwidth: the median
  pairwise distance of the pooled sample unless given); `mmd_test` adds a permutation p-value.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """PSI of 1-d samples over `bins` quantile bins of `reference` (the outer edges open)."""
    ref, cur = np.asarray(reference, np.float64).ravel(), np.asarray(current, np.float64).ravel()
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    r, c = np.maximum(r, eps), np.maximum(c, eps)
    return float(np.sum((c - r) * np.log(c / r)))


def _kolmogorov_sf(x: float, terms: int = 100) -> float:
    """P(K > x) for the Kolmogorov distribution: 2 Σ_{k>=1} (-1)^{k-1} exp(-2 k² x²)."""
    if x <= 0:
        return 1.0
    k = np.arange(1, terms + 1)
    return float(np.clip(2 * np.sum((-1.0) ** (k - 1) * np.exp(-2 * k**2 * x**2)), 0.0, 1.0))


def ks_2samp(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(D, asymptotic p-value) of the two-sample KS test on 1-d samples."""
    a, b = np.sort(np.asarray(a, np.float64).ravel()), np.sort(np.asarray(b, np.float64).ravel())
    both = np.concatenate([a, b])
    d = float(np.max(np.abs(np.searchsorted(a, both, "right") / len(a) - np.searchsorted(b, both, "right") / len(b))))
    en = np.sqrt(len(a) * len(b) / (len(a) + len(b)))
    return d, _kolmogorov_sf((en + 0.12 + 0.11 / en) * d)


def ks_features(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, float]:
    """(per-feature p-values, Bonferroni-corrected min p-value) of `[n, ...]` samples flattened to features."""
    ref = np.asarray(reference).reshape(len(reference), -1)
    cur = np.asarray(current).reshape(len(current), -1)
    p = np.array([ks_2samp(ref[:, j], cur[:, j])[1] for j in range(ref.shape[1])])
    return p, float(min(1.0, p.min() * len(p)))


def median_bandwidth(z: np.ndarray) -> float:
    """The median pairwise Euclidean distance of the rows of `z` (the usual RBF bandwidth heuristic)."""
    d2 = _sq_dists(z, z)
    return float(np.sqrt(np.median(d2[np.triu_indices(len(z), 1)])))


def _sq_dists(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.maximum((x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T, 0.0)


def _mmd2_from_kernel(k: np.ndarray, n: int) -> float:
    """Unbiased MMD² of the pooled kernel matrix `k` whose first `n` rows are x and the rest y."""
    m = len(k) - n
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    sxx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())


def mmd2(x: np.ndarray, y: np.ndarray, sigma: float | None = None) -> float:
    """Unbiased MMD² of samples `[n, ...]`, `[m, ...]` (flattened) with k(a, b) = exp(-|a - b|² / (2 σ²))."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    z = np.concatenate([x, y])
    sigma = sigma or median_bandwidth(z)
    return _mmd2_from_kernel(np.exp(-_sq_dists(z, z) / (2 * sigma**2)), len(x))


def mmd_test(
    x: np.ndarray, y: np.ndarray, *, permutations: int = 200, sigma: float | None = None, seed: int = 0
) -> tuple[float, float]:
    """(MMD², permutation p-value = (1 + #{perm MMD² >= observed}) / (1 + permutations))."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    z = np.concatenate([x, y])
    sigma = sigma or median_bandwidth(z)
    k = np.exp(-_sq_dists(z, z) / (2 * sigma**2))
    observed = _mmd2_from_kernel(k, len(x))
    rng = np.random.default_rng(seed)
    count = 0
    for _ in range(permutations):
        p = rng.permutation(len(z))
        count += _mmd2_from_kernel(k[np.ix_(p, p)], len(x)) >= observed
    return observed, (1 + count) / (1 + permutations)


@dataclass
class Alert:
    detector: str
    value: float
    threshold: float


class Monitor:
    """A sliding window of the last `window` live rows, compared with `reference` every `every` rows.

    Detectors: KS (Bonferroni p < `p_value`), MMD (permutation p < `p_value`, on at most `mmd_rows` rows each side)
    on the inputs, and PSI > `psi_threshold` on a 1-d score of each row (e.g. the prediction's confidence) when
    `reference_scores` is given. `add(rows, scores)` returns the alerts raised by that addition (if it completed
    a check), and `last` holds the latest statistics (what /metrics would export).

    Windows need ~100+ rows: PSI's null expectation is about (bins - 1) / window (0.45 at 20 rows, over the 0.25
    alarm), and every detector checked `k` times raises about k * p_value false alarms under no shift."""

    def __init__(
        self,
        reference: np.ndarray,
        *,
        reference_scores: np.ndarray | None = None,
        window: int = 200,
        every: int = 100,
        p_value: float = 0.01,
        psi_threshold: float = 0.25,
        mmd_rows: int = 100,
        permutations: int = 200,
    ):
        if 1.0 / (1 + permutations) >= p_value:
            raise ValueError(
                f"permutations={permutations}: the smallest MMD p-value, 1/(1 + permutations), cannot go below "
                f"p_value={p_value}; use at least {int(np.ceil(1 / p_value))} permutations"
            )
        self.reference = np.asarray(reference, np.float64).reshape(len(reference), -1)
        self.reference_scores = None if reference_scores is None else np.asarray(reference_scores, np.float64)
        self.window, self.every, self.p_value, self.psi_threshold = window, every, p_value, psi_threshold
        self.mmd_rows, self.permutations = mmd_rows, permutations
        self.rows: deque = deque(maxlen=window)
        self.scores: deque = deque(maxlen=window)
        self.seen, self.checks, self.last = 0, 0, {}

    def add(self, rows: np.ndarray, scores: np.ndarray | None = None) -> list[Alert]:
        rows = np.asarray(rows, np.float64).reshape(len(rows), -1)
        alerts = []
        for i, r in enumerate(rows):
            self.rows.append(r)
            if scores is not None:
                self.scores.append(float(scores[i]))
            self.seen += 1
            if len(self.rows) == self.window and self.seen % self.every == 0:
                alerts += self.check()
        return alerts

    def check(self) -> list[Alert]:
        cur = np.stack(self.rows)
        _, ks_p = ks_features(self.reference, cur)
        n = min(self.mmd_rows, len(cur), len(self.reference))
        _, mmd_p = mmd_test(self.reference[:n], cur[-n:], permutations=self.permutations, seed=self.checks)
        self.last = {"ks_p": ks_p, "mmd_p": mmd_p}
        alerts = [Alert(k, v, self.p_value) for k, v in self.last.items() if v < self.p_value]
        if self.reference_scores is not None and len(self.scores) == len(self.rows):
            self.last["psi"] = value = psi(self.reference_scores, np.asarray(self.scores))
            if value > self.psi_threshold:
                alerts.append(Alert("psi", value, self.psi_threshold))
        self.checks += 1
        return alerts
