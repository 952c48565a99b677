"""FID (FMNIST classifier) / KID: the Fréchet distance against the closed form for Gaussians, KID against a brute
force double sum, and the evaluator's classifier features separating real images from noise."""

import baselines  # noqa: F401  (tests/ on sys.path)
import jax
import numpy as np
import pytest
from run_helpers import short_run

from jaxdl import data
from jaxdl.evaluators.fid import _classifier, frechet_distance, gaussian_stats, kernel_distance


def _spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _closed_form(mu1, s1, mu2, s2):
    """||μ1-μ2||² + Tr Σ1 + Tr Σ2 - 2 Tr (Σ1^½ Σ2 Σ1^½)^½ with symmetric square roots by eigendecomposition."""

    def sqrt_psd(m):
        w, v = np.linalg.eigh(m)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    r = sqrt_psd(s1)
    return np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(sqrt_psd(r @ s2 @ r))


def test_frechet_distance_of_gaussians_equals_the_closed_form():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2, s1, s2 = rng.normal(size=d), rng.normal(size=d), _spd(rng, d), _spd(rng, d)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_closed_form(mu1, s1, mu2, s2), rel=1e-8)
    # 1-D: (μ1 - μ2)² + (σ1 - σ2)²
    assert frechet_distance([1.0], [[4.0]], [-0.5], [[0.25]]) == pytest.approx(1.5**2 + 1.5**2)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)
    # the estimate from samples converges to it (bias O(d²/n))
    x1 = rng.multivariate_normal(mu1, s1, size=50_000)
    x2 = rng.multivariate_normal(mu2, s2, size=50_000)
    est = frechet_distance(*gaussian_stats(x1), *gaussian_stats(x2))
    assert est == pytest.approx(_closed_form(mu1, s1, mu2, s2), rel=0.02)


def test_kid_equals_a_brute_force_unbiased_mmd():
    rng = np.random.default_rng(1)
    f1, f2 = rng.normal(size=(30, 5)), rng.normal(0.5, 1.0, size=(30, 5))
    k = lambda a, b: (a @ b / 5 + 1.0) ** 3
    n = 30
    xx = sum(k(f1[i], f1[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(f2[i], f2[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(f1[i], f2[j]) for i in range(n) for j in range(n)) / n**2
    # one subset of all 30 rows (a permutation): MMD² is invariant to the order
    assert kernel_distance(f1, f2, subsets=1, subset_size=30) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)
    same = rng.normal(size=(2000, 5))
    assert abs(kernel_distance(same[:1000], same[1000:], subsets=20, subset_size=500)) < 0.01


def test_classifier_features_separate_real_images_from_noise(tmp_path, data_dir):
    """A tiny LeNet classify run on digits defines the features; two disjoint halves of real images are far closer
    in FID than real images and uniform noise, and features of [0, 1] images go through the run's normalization."""
    short_run(
        tmp_path,
        data_dir,
        data="digits",
        model=dict(name="lenet"),
        steps=40,
        log_every=20,
        batch=64,
        eval_batch=250,
        lr=3e-3,
    )
    features, name = _classifier(str(tmp_path), None)
    assert name == "digits"
    x = data.preprocess("digits_unit", data.memory.read(data.load("digits_unit", "train", data_dir), range(1200)))
    real = features(x["input"])
    assert real.shape == (1200, 84)
    noise = features(np.asarray(jax.random.uniform(jax.random.key(0), (600, 28, 28, 1))))
    fid_real = frechet_distance(*gaussian_stats(real[:600]), *gaussian_stats(real[600:]))
    fid_noise = frechet_distance(*gaussian_stats(real[:600]), *gaussian_stats(noise))
    assert fid_noise > 5 * fid_real, (fid_real, fid_noise)
    with pytest.raises(ValueError, match=r"takes images \(28, 28, 1\)"):
        features(np.zeros((2, 8, 8, 1), np.float32))
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        _classifier(str(tmp_path / "nope"), None)
