"""VAE: the ELBO against a hand computation, the importance-weighted bound against numerical integration of
log p(x) (1-D latent), a short run beating the pixel-marginal Bernoulli model, and clear errors on bad input."""

import baselines  # noqa: F401  (tests/ on sys.path, like the other test modules)
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from run_helpers import short_run

from jaxdl import data, models, tasks
from jaxdl.tasks.vae import elbo_terms, iw_log_likelihood


def _vae(latent=2, width=2, shape=(8, 8, 1)):
    with nnx.use_eager_sharding(False):
        return models.make(
            dict(name="vae", latent=latent, width=width), input_shape=shape, num_classes=1, rngs=nnx.Rngs(3)
        )


def _log_sigmoid(v):
    return -np.logaddexp(0.0, -v)


def test_elbo_equals_hand_computation():
    model = _vae()
    rng = np.random.default_rng(0)
    x = (rng.uniform(size=(4, 8, 8, 1)) > 0.5).astype(np.float32)
    eps = rng.normal(size=(4, 2)).astype(np.float32)
    log_px, kl = elbo_terms(model, jnp.asarray(x), jnp.asarray(eps))

    mean, logvar = (np.asarray(a, np.float64) for a in model.encode(jnp.asarray(x)))
    z = mean + np.exp(0.5 * logvar) * eps
    logits = np.asarray(model.decode(jnp.asarray(z, jnp.float32)), np.float64)
    want_px = np.sum(x * _log_sigmoid(logits) + (1 - x) * _log_sigmoid(-logits), axis=(1, 2, 3))
    want_kl = 0.5 * np.sum(np.exp(logvar) + mean**2 - 1.0 - logvar, axis=1)
    np.testing.assert_allclose(log_px, want_px, rtol=1e-5)
    np.testing.assert_allclose(kl, want_kl, rtol=1e-5, atol=1e-6)

    # the task's loss: β-weighted, with ε drawn from the `sampling` stream (binarize=False: x is already binary)
    task = tasks.make(dict(name="vae", beta=0.5, binarize=False))
    key = jax.random.key(7)
    loss, metrics = task.loss(model, {"input": jnp.asarray(x)}, nnx.Rngs(dropout=key, sampling=key))
    eps2 = np.asarray(jax.random.normal(nnx.Rngs(dropout=key, sampling=key).sampling(), (4, 2)))
    lp2, kl2 = (np.asarray(a) for a in elbo_terms(model, jnp.asarray(x), jnp.asarray(eps2)))
    assert float(loss) == pytest.approx(np.mean(-lp2 + 0.5 * kl2), rel=1e-5)
    assert float(metrics["neg_elbo"]) == pytest.approx(np.mean(kl2 - lp2), rel=1e-5)


def test_importance_weighted_bound_approaches_the_integrated_likelihood():
    """1-D latent: log p(x) = log ∫ p(x|z) N(z; 0, 1) dz by quadrature on a fine grid (independent of q). The IW
    bound with k = 1 is the single-sample ELBO estimate; with many samples it is tighter and within 0.05 nats of log p(x)."""
    model = _vae(latent=1)
    x = jnp.asarray((np.random.default_rng(1).uniform(size=(3, 8, 8, 1)) > 0.6).astype(np.float32))
    grid = np.linspace(-8.0, 8.0, 4001)
    logits = np.asarray(model.decode(jnp.asarray(grid[:, None], jnp.float32)), np.float64)  # [G, 8, 8, 1]
    xn = np.asarray(x, np.float64)
    log_px_z = np.sum(
        xn[None] * _log_sigmoid(logits[:, None]) + (1 - xn[None]) * _log_sigmoid(-logits[:, None]), axis=(2, 3, 4)
    )  # [G, b]
    log_prior = -0.5 * grid**2 - 0.5 * np.log(2 * np.pi)
    dz = grid[1] - grid[0]
    exact = np.array([np.log(np.sum(np.exp(c - c.max())) * dz) + c.max() for c in (log_px_z + log_prior[:, None]).T])

    key = jax.random.key(0)
    iw1 = np.asarray(iw_log_likelihood(model, x, key, 1))  # k = 1: the single-sample ELBO estimate
    eps = np.asarray(jax.random.normal(key, (1, 3, 1))[0], np.float64)
    lp, _ = elbo_terms(model, x, jnp.asarray(eps, jnp.float32))
    mean, logvar = (np.asarray(a, np.float64) for a in model.encode(x))
    z = mean + np.exp(0.5 * logvar) * eps
    log_ratio = np.sum(-0.5 * z**2 + 0.5 * eps**2 + 0.5 * logvar, axis=1)  # log p(z) - log q(z|x)
    np.testing.assert_allclose(iw1, np.asarray(lp, np.float64) + log_ratio, rtol=1e-5)
    iw = np.asarray(iw_log_likelihood(model, x, jax.random.key(1), 5000))
    one = lambda k: jnp.subtract(*elbo_terms(model, x, jax.random.normal(k, (3, 1))))
    elbo_mean = np.asarray(jnp.mean(jax.vmap(one)(jax.random.split(jax.random.key(2), 200)), axis=0))
    np.testing.assert_allclose(iw, exact, atol=0.05)  # a tight bound: Monte Carlo error only
    assert np.all(iw >= elbo_mean), (iw, elbo_mean)


def test_short_run_beats_the_pixel_marginal_model(tmp_path, data_dir):
    final, losses = short_run(
        tmp_path,
        data_dir,
        data="digits_unit",
        model=dict(name="vae", latent=8, width=16),
        task="vae",
        steps=300,
        log_every=100,
        batch=64,
        eval_batch=250,
        lr=3e-3,
    )
    # trivial baseline: each pixel an independent Bernoulli with its train-set mean intensity, scored (in
    # expectation over the stochastic binarization) on the test images: -Σ u log p + (1 - u) log(1 - p)
    train = data.preprocess("digits_unit", data.memory.read(data.load("digits_unit", "train", data_dir), range(1297)))
    test = data.preprocess("digits_unit", data.memory.read(data.load("digits_unit", "test", data_dir), range(500)))
    p = np.clip(train["input"].mean(0), 1e-4, 1 - 1e-4)
    u = test["input"]
    marginal = float(np.mean(-np.sum(u * np.log(p) + (1 - u) * np.log(1 - p), axis=(1, 2, 3))))
    assert final["eval/neg_elbo"] < marginal - 40.0, (final, marginal)
    assert final["eval/iw_nll"] <= final["eval/neg_elbo"] + 0.5
    assert losses[-1] < losses[0]


def test_bad_inputs_fail_clearly(tmp_path, data_dir):
    with pytest.raises(ValueError, match=r"model 'vae' takes images \[height, width, channels\].*input_shape=\(40,\)"):
        _vae(shape=(40,))
    with pytest.raises(ValueError, match=r"pixel values must lie in \[0, 1\].*fashion_mnist_unit"):
        short_run(
            tmp_path,
            data_dir,
            data="digits",
            model=dict(name="vae", latent=2, width=2),
            task="vae",
            steps=2,
            log_every=1,
            batch=8,
            eval_batch=8,
            lr=1e-3,
        )
    with pytest.raises(ValueError, match=r"config.task.beta=-1"):
        tasks.make(dict(name="vae", beta=-1.0))
