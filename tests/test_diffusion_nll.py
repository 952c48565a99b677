"""The DDPM variational bound (`jaxdl.evaluators.diffusion_nll`): every term against a numpy loop over t written from
Ho et al.'s formulas (scipy's normal CDF, the textbook Gaussian KL), the whole bound of a one-point dataset under its
exact ε against its closed form, L_T ≈ 0 for the linear schedule, the evaluator in a run, and clear errors."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.stats

from jaxdl import config as config_lib
from jaxdl.evaluators.diffusion_nll import check_8bit, vlb_terms
from jaxdl.tasks.diffusion import make_schedule
from jaxdl.train import train_and_evaluate


def _images(n, shape, seed):
    """8-bit images mapped to [-1, 1], with both edge values present (the decoder's open bins)."""
    x = np.random.default_rng(seed).integers(0, 256, (n, *shape))
    x[:, 0, 0, 0], x[:, 0, 1, 0] = 0, 255
    return 2.0 * x / 255.0 - 1.0


def _eps_fn(x, t):  # a fixed nonlinear "network" of x and t
    return jnp.tanh(0.7 * x + 0.05 * t.astype(jnp.float32).reshape(-1, *([1] * (x.ndim - 1)))) - 0.1


def _numpy_bound(x0, key, sched, variance):
    """(prior [n], terms [n, T]) by a loop over t in float64, from Ho et al. 2020 eqs. 4-7 and 12-13."""
    b, a, ab = sched["betas"], sched["alphas"], sched["alpha_bar"]
    T, n = len(b), x0.shape[0]
    kl = lambda m1, v1, m2, v2: 0.5 * (np.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1.0)
    prior = kl(np.sqrt(ab[-1]) * x0, 1.0 - ab[-1], 0.0, 1.0).reshape(n, -1).sum(1)
    tilde = lambda t: (1.0 - ab[t - 1]) / (1.0 - ab[t]) * b[t]  # β̃ of 0-based t >= 1
    terms = np.zeros((n, T))
    for t in range(T):
        eps = np.asarray(jax.random.normal(jax.random.fold_in(key, t), x0.shape), np.float64)
        xt = np.sqrt(ab[t]) * x0 + np.sqrt(1.0 - ab[t]) * eps
        e = np.asarray(_eps_fn(jnp.asarray(xt, jnp.float32), jnp.full((n,), t, jnp.int32)), np.float64)
        x0_hat = np.clip((xt - np.sqrt(1.0 - ab[t]) * e) / np.sqrt(ab[t]), -1.0, 1.0)
        ab_prev = ab[t - 1] if t else 1.0
        c0, ct = np.sqrt(ab_prev) * b[t] / (1.0 - ab[t]), np.sqrt(a[t]) * (1.0 - ab_prev) / (1.0 - ab[t])
        mean_model, mean_true = c0 * x0_hat + ct * xt, c0 * x0 + ct * xt  # eq. 7 at x̂0 and at the true x0
        var_model = tilde(max(t, 1)) if variance == "small" or t == 0 else b[t]
        if t == 0:
            sd = np.sqrt(var_model)
            hi = scipy.stats.norm.cdf((x0 + 1 / 255 - mean_model) / sd)
            lo = scipy.stats.norm.cdf((x0 - 1 / 255 - mean_model) / sd)
            p = np.where(x0 <= -1.0 + 1e-6, hi, np.where(x0 >= 1.0 - 1e-6, 1.0 - lo, hi - lo))
            terms[:, 0] = -np.log(p).reshape(n, -1).sum(1)
        else:
            terms[:, t] = kl(mean_true, tilde(t), mean_model, var_model).reshape(n, -1).sum(1)
    return prior, terms


@pytest.mark.parametrize("variance", ["small", "large"])
def test_terms_equal_a_numpy_loop_over_t(variance):
    sched = make_schedule("linear", 30)
    x0 = _images(3, (4, 4, 1), 0)
    key = jax.random.key(7)
    prior, terms = jax.jit(lambda x: vlb_terms(_eps_fn, x, key, sched, variance))(jnp.asarray(x0, jnp.float32))
    ref_prior, ref_terms = _numpy_bound(x0, key, sched, variance)
    np.testing.assert_allclose(np.asarray(prior), ref_prior, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(terms), ref_terms, rtol=2e-3, atol=2e-3)
    assert (ref_terms[:, 1:] > 0).all()  # the model is not the posterior: every KL is positive


def test_one_point_dataset_with_its_exact_eps_has_the_closed_form_bound():
    """Data = one image x*. Its exact ε is (x_t - √ᾱ_t x*) / √(1-ᾱ_t), so x̂0 = x*: every KL term vanishes (model
    variance = posterior variance) and L_0 is the mass of the pixel's bin under N(x*, β̃_2) (the posterior mean at
    t = 1 is x* itself). At T = 1000 the linear schedule's prior term is ≈ 0 (ᾱ_T ≈ 4e-5)."""
    sched = make_schedule("linear", 1000)
    x_star = _images(1, (5, 5, 1), 1)[0]
    ab = jnp.asarray(sched["alpha_bar"], jnp.float32)

    def exact(x, t):
        a = ab[t].reshape(-1, 1, 1, 1)
        return (x - jnp.sqrt(a) * x_star) / jnp.sqrt(1.0 - a)

    x0 = jnp.asarray(np.stack([x_star, x_star]), jnp.float32)
    prior, terms = jax.jit(lambda x: vlb_terms(exact, x, jax.random.key(0), sched))(x0)
    np.testing.assert_allclose(np.asarray(terms[:, 1:]), 0.0, atol=2e-4)  # [2, 999] KLs of matching Gaussians
    b, abar = sched["betas"], sched["alpha_bar"]
    sd = np.sqrt(b[1] * (1 - abar[0]) / (1 - abar[1]))
    inner = 2 * scipy.stats.norm.cdf(1 / 255 / sd) - 1  # interior pixel: the bin is centred on the mean
    edge = scipy.stats.norm.cdf(1 / 255 / sd)  # x* = ±1: the open edge bin
    is_edge = np.abs(np.abs(x_star) - 1.0) < 1e-6
    decoder = -np.sum(np.where(is_edge, np.log(edge), np.log(inner)))
    np.testing.assert_allclose(np.asarray(terms[:, 0]), decoder, rtol=1e-4)
    prior_closed = np.sum(0.5 * (abar[-1] * x_star**2 - abar[-1] - np.log1p(-abar[-1])))
    np.testing.assert_allclose(np.asarray(prior), prior_closed, rtol=1e-3)
    assert prior_closed / (25 * np.log(2)) < 3e-5  # L_T ≈ 0 bits/dim


def _run_config(data_dir, **nll):
    c = config_lib.base()
    c.data.name, c.data.data_dir, c.data.batch_size, c.data.eval_batch_size = "digits_unit", data_dir, 16, 50
    c.model = ml_collections.ConfigDict(dict(name="unet", channels=8, mults=(1, 1, 2), heads=2))
    c.task = ml_collections.ConfigDict(dict(name="diffusion", timesteps=50, sample_steps=5))
    c.evals.nll = dict(kind="diffusion_nll", num_examples=7, batch_size=4) | nll
    c.train.steps, c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 1, 1, 0, 0
    c.train.progress = False
    return c


def test_evaluator_in_a_run_equals_the_terms_of_its_images(tmp_path, data_dir):
    """A 1-step run on sklearn digits (upsampled to 28x28, 8-bit): the evaluator's bits/dim over the first 7 test images (batches of 4, the
    8th row masked) equals vlb_terms on those images with the same keys, summed and converted by hand."""
    from jaxdl import data
    from jaxdl.state import restore_run

    final = train_and_evaluate(_run_config(data_dir), str(tmp_path), devices=jax.devices()[:1])
    run = restore_run(str(tmp_path), devices=jax.devices()[:1])
    from flax import nnx

    model = nnx.merge(run.graphdef, run.state["params"], run.state["rest"])
    src = data.load("digits_unit", "test", data_dir)
    x = jnp.asarray(data.preprocess("digits_unit", data.memory.read(src, range(8)))["input"])
    key = jax.random.key(0)
    total = 0.0
    for i in range(2):
        prior, terms = vlb_terms(
            lambda v, t: model(v, t, train=False),
            2 * x[4 * i : 4 * i + 4] - 1,
            jax.random.fold_in(key, i),
            run.task.schedule,
        )
        total += float(jnp.sum((prior + terms.sum(1))[: 7 - 4 * i]))
    expected = total / (7 * np.log(2) * 784)
    assert final["eval/nll/n"] == 7
    assert final["eval/nll/bits_per_dim"] == pytest.approx(expected, rel=1e-4)
    parts = sum(final[f"eval/nll/{k}_bpd"] for k in ("prior", "decoder", "diffusion"))
    assert parts == pytest.approx(final["eval/nll/bits_per_dim"], rel=1e-6)
    assert 1.0 < expected < 20.0  # an untrained model: well above 0, below the bound's scale of pure noise


def test_bad_inputs_fail_clearly(tmp_path, data_dir):
    with pytest.raises(ValueError, match=r"variance='huge' is not a fixed DDPM variance"):
        vlb_terms(_eps_fn, jnp.zeros((1, 2, 2, 1)), jax.random.key(0), make_schedule("linear", 50), "huge")
    with pytest.raises(
        ValueError, match=r"config.task.timesteps=20: the linear schedule rescaled by 1000/T reaches β = 1"
    ):
        make_schedule("linear", 20)
    check_8bit(np.arange(256) / 255.0, "grid")  # every 8-bit level passes
    with pytest.raises(ValueError, match=r"diffusion_nll: split 'test' images must be 8-bit values / 255"):
        check_8bit(np.array([0.0, 0.5, 1.0]), "split 'test'")  # 0.5 = 127.5 / 255
    with pytest.raises(ValueError, match=r"config.evals.nll: diffusion_nll needs the diffusion task, not 'vae'"):
        c = _run_config(data_dir)
        c.model = ml_collections.ConfigDict(dict(name="vae", latent=2, width=4))
        c.task = ml_collections.ConfigDict(dict(name="vae"))
        train_and_evaluate(c, str(tmp_path), devices=jax.devices()[:1])
