"""Drift detectors (`jaxdl.serve.drift`): PSI against its closed form, KS against scipy, unbiased MMD² against a
double loop, the permutation test's false-alarm rate under no shift and its power under a planted shift, and the
sliding-window monitor's alerts."""

import numpy as np
import pytest
import scipy.stats

from jaxdl.serve import drift


def test_psi_closed_form():
    ref = np.arange(1000.0)  # deciles: bins of exactly 100 reference points
    rng = np.random.default_rng(0)
    props = np.array([0.05, 0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.15, 0.15])
    cur = np.concatenate([rng.uniform(100 * i, 100 * i + 99, int(1000 * p)) for i, p in enumerate(props)])
    want = np.sum((props - 0.1) * np.log(props / 0.1))
    assert drift.psi(ref, cur) == pytest.approx(want, rel=1e-12)
    assert drift.psi(ref, ref) == 0.0
    assert drift.psi(ref, ref + 2000) > 5  # everything in the last bin


def test_ks_matches_scipy():
    rng = np.random.default_rng(1)
    for shift, n, m in [(0.0, 200, 300), (0.3, 150, 150), (1.0, 80, 120)]:
        a, b = rng.normal(size=n), rng.normal(shift, size=m)
        d, p = drift.ks_2samp(a, b)
        ref = scipy.stats.ks_2samp(a, b, method="asymp")
        assert d == pytest.approx(ref.statistic, abs=1e-12)
        assert p == pytest.approx(ref.pvalue, abs=0.02)  # Stephens' correction vs scipy's kstwo: close, not equal


def test_mmd2_unbiased_estimator_matches_double_loop():
    rng = np.random.default_rng(2)
    x, y, sigma = rng.normal(size=(7, 3)), rng.normal(0.5, size=(5, 3)), 1.3
    k = lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * sigma**2))
    sxx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    syy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    sxy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    assert drift.mmd2(x, y, sigma) == pytest.approx(sxx + syy - 2 * sxy, rel=1e-10)


def test_permutation_test_false_alarms_and_power():
    rng = np.random.default_rng(3)
    trials, alpha = 40, 0.1
    null = [drift.mmd_test(rng.normal(size=(30, 3)), rng.normal(size=(30, 3)), permutations=49, seed=i)[1]
            for i in range(trials)]  # fmt: skip
    shifted = [drift.mmd_test(rng.normal(size=(30, 3)), rng.normal(0.8, size=(30, 3)), permutations=49, seed=i)[1]
               for i in range(trials)]  # fmt: skip
    far = np.mean(np.asarray(null) < alpha)
    power = np.mean(np.asarray(shifted) < alpha)
    # under the null the p-value is uniform: the false-alarm rate is alpha up to binomial noise (sd 0.047 at n=40)
    assert far <= alpha + 2 * np.sqrt(alpha * (1 - alpha) / trials), far
    assert power >= 0.9, power


def test_monitor_alerts_only_on_shift():
    rng = np.random.default_rng(4)
    ref = rng.normal(size=(400, 4))
    ref_scores = rng.beta(8, 2, size=400)  # e.g. confidences on the reference split
    mon = drift.Monitor(ref, reference_scores=ref_scores, window=100, every=100, p_value=0.01, permutations=199)
    alerts = mon.add(rng.normal(size=(300, 4)), rng.beta(8, 2, size=300))
    assert alerts == [] and mon.checks == 3 and set(mon.last) == {"ks_p", "mmd_p", "psi"}
    shifted = rng.normal(size=(100, 4)) + np.array([0.0, 0.0, 1.0, 0.0])  # one feature drifts
    alerts = mon.add(shifted, rng.beta(2, 2, size=100))  # and the model gets unsure
    assert {a.detector for a in alerts} == {"ks_p", "mmd_p", "psi"}, alerts
    with pytest.raises(ValueError, match="permutations=99: the smallest MMD p-value"):
        drift.Monitor(ref, p_value=0.01, permutations=99)
