"""A/B comparison (`jaxdl.serve.ab`) by simulation: the mSPRT's false-positive rate under equal accuracies stays
≤ α (while a fixed-n test repeated at every look does not), its power for a clear difference is > 0.8, the paired
bootstrap interval covers the true difference at its nominal rate and matches the closed-form standard error, the
mixture likelihood ratio against a direct sum, and bad input."""

import numpy as np
import pytest
import scipy.stats
from scipy.special import comb

from jaxdl.serve import ab


def _paired(rng, n, p_both, p_only_a, p_only_b):
    """Correctness of A and B on n examples: both right / only A / only B / neither with the given probabilities."""
    k = rng.choice(4, size=n, p=[p_both, p_only_a, p_only_b, 1 - p_both - p_only_a - p_only_b])
    return np.isin(k, (0, 1)), np.isin(k, (0, 2))


def _mc_slack(p, trials):
    return 3 * np.sqrt(p * (1 - p) / trials)


def test_mixture_lr_closed_form():
    # Λ = ∫ p^s (1-p)^f dBeta(1,1) / 2^-(s+f) = s! f! / (s+f+1)! · 2^(s+f)
    for s, f in [(0, 0), (3, 1), (10, 4), (7, 7)]:
        want = 1.0 / ((s + f + 1) * comb(s + f, s)) * 2.0 ** (s + f)
        assert np.exp(ab.log_mixture_lr(s, f)) == pytest.approx(want, rel=1e-10)
    # its mean under H0 is 1 (a martingale started at 1): Σ_s Binom(n, 1/2)(s) Λ(s, n - s)
    for n, c in [(20, 1.0), (50, 5.0)]:
        s = np.arange(n + 1)
        mean = np.sum(scipy.stats.binom.pmf(s, n, 0.5) * np.exp(ab.log_mixture_lr(s, n - s, c)))
        assert mean == pytest.approx(1.0, rel=1e-9)


def test_sequential_false_positive_rate_under_null_and_power():
    rng = np.random.default_rng(0)
    alpha, trials, n = 0.05, 400, 1500
    null = [ab.sequential_test(*_paired(rng, n, 0.6, 0.15, 0.15), alpha=alpha) for _ in range(trials)]
    fpr = np.mean([r["stopped_at"] is not None for r in null])
    assert fpr <= alpha + _mc_slack(alpha, trials), fpr
    # the always-valid p-value is super-uniform under H0: P(p <= a) <= a at every a
    p = np.array([r["p_value"] for r in null])
    for level in (0.1, 0.2, 0.5):
        assert np.mean(p <= level) <= level + _mc_slack(level, trials), level

    # for contrast: a McNemar z-test at level alpha repeated every 100 examples (peeking) exceeds alpha
    naive = 0
    for _ in range(trials):
        a, b = _paired(rng, n, 0.6, 0.15, 0.15)
        s, f = np.cumsum(b & ~a), np.cumsum(a & ~b)
        looks = np.arange(99, n, 100)
        z = np.abs(s[looks] - f[looks]) / np.sqrt(np.maximum(s[looks] + f[looks], 1))
        naive += np.any(z > scipy.stats.norm.ppf(1 - alpha / 2))
    assert naive / trials > alpha + _mc_slack(alpha, trials), naive / trials

    # power: accuracy 0.75 (A) vs 0.83 (B), errors partly shared
    alt = [ab.sequential_test(*_paired(rng, n, 0.65, 0.10, 0.18), alpha=alpha) for _ in range(trials // 2)]
    power = np.mean([r["decision"] == "B better" for r in alt])
    assert power > 0.8, power
    assert not any(r["decision"] == "A better" for r in alt)
    assert np.median([r["stopped_at"] for r in alt if r["stopped_at"]]) < n


def test_bootstrap_coverage_and_standard_error():
    rng = np.random.default_rng(1)
    trials, n, level = 400, 300, 0.9
    p_both, p_a, p_b = 0.6, 0.1, 0.15
    true_diff = p_b - p_a
    covered, widths, ses = 0, [], []
    for t in range(trials):
        a, b = _paired(rng, n, p_both, p_a, p_b)
        diff, lo, hi = ab.paired_bootstrap_ci(a, b, confidence=level, resamples=2000, seed=t)
        assert lo <= diff <= hi
        covered += lo <= true_diff <= hi
        widths.append(hi - lo)
        ses.append(np.std(b.astype(float) - a, ddof=0) / np.sqrt(n))
    assert abs(covered / trials - level) <= _mc_slack(level, trials), covered / trials
    # the percentile interval's width ≈ 2 z σ̂/√n (the bootstrap SE of a mean is the plug-in SE)
    ratio = np.array(widths) / (2 * scipy.stats.norm.ppf((1 + level) / 2) * np.array(ses))
    assert abs(np.mean(ratio) - 1) < 0.03, np.mean(ratio)


def test_replay_and_compare():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 3))
    y = (x[:, 0] > 0).astype(int)
    model_a = lambda v: np.stack([-v[:, 1], v[:, 1]], 1)  # chance
    model_b = lambda v: np.stack([-v[:, 0], v[:, 0]], 1)  # perfect
    ca, cb = ab.replay(model_a, model_b, x, y, batch_size=64)
    np.testing.assert_array_equal(cb, np.ones(500, bool))
    np.testing.assert_array_equal(ca, (x[:, 1] > 0) == y)
    r = ab.compare(ca, cb, alpha=0.05, resamples=1000)
    assert r["accuracy_b"] == 1.0 and r["sequential"]["decision"] == "B better"
    assert r["bootstrap_ci"][0] > 0.3 and r["difference"] == pytest.approx(1 - ca.mean())


def test_bad_input():
    a = np.ones(10, bool)
    with pytest.raises(ValueError, match="mismatched traffic"):
        ab.sequential_test(a, np.ones(9, bool))
    with pytest.raises(ValueError, match="mismatched traffic"):
        ab.paired_bootstrap_ci(a, np.ones(11))
    with pytest.raises(ValueError, match="mismatched traffic"):
        ab.replay(lambda v: v, lambda v: v, np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="correctness"):
        ab.sequential_test(a, np.full(10, 0.5))
    with pytest.raises(ValueError, match="alpha"):
        ab.sequential_test(a, a, alpha=1.5)
    with pytest.raises(ValueError, match="confidence"):
        ab.paired_bootstrap_ci(a, a, confidence=0)
    with pytest.raises(ValueError, match="empty"):
        ab.compare(np.zeros(0), np.zeros(0))
