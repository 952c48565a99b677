"""Diffusion: the forward process against the chained one-step kernels, DDIM(η=1, all steps) against DDPM on a 1-D
mixture with its exact ε-model, a short run beating the ε = 0 predictor, and clear errors."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxdl import config as config_lib
from jaxdl import tasks
from jaxdl.tasks.diffusion import ddim_sample, ddpm_sample, make_schedule, q_sample
from jaxdl.train import train_and_evaluate


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_forward_process_matches_the_closed_form(name):
    """x_t from T one-step kernels q(x_t | x_{t-1}) = N(√(1-β_t) x_{t-1}, β_t) (Monte Carlo, 100k chains) has the
    moments of the closed form q(x_t | x0) = N(√ᾱ_t x0, 1 - ᾱ_t) that `q_sample` draws from."""
    sched = make_schedule(name, 50)
    x0 = np.array([-0.8, 0.3, 1.0])
    rng = np.random.default_rng(0)
    x = np.broadcast_to(x0, (100_000, 3)).copy()
    for t in range(50):
        x = np.sqrt(1 - sched["betas"][t]) * x + np.sqrt(sched["betas"][t]) * rng.normal(size=x.shape)
        if t in (0, 9, 24, 49):
            ab = sched["alpha_bar"][t]
            closed = np.asarray(
                q_sample(
                    jnp.asarray(np.broadcast_to(x0, (100_000, 3)), jnp.float32),
                    jnp.full((100_000,), t),
                    jax.random.normal(jax.random.key(t), (100_000, 3)),
                    sched["alpha_bar"],
                )
            )
            for sample in (x, closed):
                np.testing.assert_allclose(sample.mean(0), np.sqrt(ab) * x0, atol=0.012)
                np.testing.assert_allclose(sample.var(0), 1 - ab, rtol=0.02, atol=2e-4)
    if name == "linear":  # Ho et al.: β from 1e-4 to 0.02 at T = 1000
        s = make_schedule("linear", 1000)["betas"]
        assert s[0] == pytest.approx(1e-4) and s[-1] == pytest.approx(0.02)


# a 1-D two-Gaussian mixture and its exact ε: ε*(x, t) = -√(1-ᾱ_t) ∇ log q_t(x), q_t = Σ π N(√ᾱ μ, ᾱ s² + 1 - ᾱ)
PI, MU, SD = np.array([0.3, 0.7]), np.array([-0.9, 0.6]), np.array([0.1, 0.2])


def exact_eps(alpha_bar):
    ab_all = jnp.asarray(alpha_bar, jnp.float32)

    def eps(x, t):
        ab = ab_all[t][:, None, None]  # x [n, 1]
        m, v = jnp.sqrt(ab) * MU, ab * SD**2 + 1.0 - ab  # [n, 1, 2]
        logw = jnp.log(PI) - 0.5 * (x[..., None] - m) ** 2 / v - 0.5 * jnp.log(v)
        w = jax.nn.softmax(logw, axis=-1)
        score = jnp.sum(w * -(x[..., None] - m) / v, axis=-1)
        return -jnp.sqrt(1.0 - ab[..., 0]) * score

    return eps


def test_ddim_eta1_all_steps_reproduces_ddpm_on_a_mixture():
    sched = make_schedule("linear", 500)
    eps = exact_eps(sched["alpha_bar"])
    key, n = jax.random.key(0), 10_000
    ddpm = np.asarray(jax.jit(lambda k: ddpm_sample(eps, (n, 1), k, sched))(key))[:, 0]
    ddim = np.asarray(jax.jit(lambda k: ddim_sample(eps, (n, 1), k, sched, steps=500, eta=1.0))(key))[:, 0]
    ddim_other = np.asarray(jax.jit(lambda k: ddim_sample(eps, (n, 1), k, sched, 500, 1.0))(jax.random.key(1)))[:, 0]
    # the same transitions and noise: the same samples up to float32 rounding (which the dynamics can amplify for
    # a rare sample near the boundary between the modes)
    diff = np.abs(ddim - ddpm)
    assert np.mean(diff < 1e-3) > 0.999 and diff.max() < 0.05, diff.max()
    # and both draw from the mixture (T = 500 leaves a ~3 % shortfall in the modes' spread: tolerance 0.01)
    true_mean = float(PI @ MU)
    for s in (ddpm, ddim_other):
        right = s[s > -0.15]
        assert np.mean(s > -0.15) == pytest.approx(0.7, abs=0.015)
        assert right.mean() == pytest.approx(0.6, abs=0.01) and right.std() == pytest.approx(0.2, abs=0.01)
        assert s.mean() == pytest.approx(true_mean, abs=0.02)
    # deterministic DDIM with 50 steps lands on the same mixture (coarser)
    fast = np.asarray(jax.jit(lambda k: ddim_sample(eps, (n, 1), k, sched, 50, 0.0))(key))[:, 0]
    assert np.mean(fast > -0.15) == pytest.approx(0.7, abs=0.02) and fast.mean() == pytest.approx(true_mean, abs=0.03)


def test_short_run_beats_the_zero_predictor(tmp_path, data_dir):
    """Predicting ε = 0 has loss E[ε²] = 1 (the trivial baseline); the U-Net must get well below it. The run keeps
    an EMA and samples from it (5 DDIM steps) into a PNG."""
    c = config_lib.base()
    c.data.name, c.data.data_dir, c.data.batch_size, c.data.eval_batch_size = "digits_unit", data_dir, 32, 100
    c.model = ml_collections.ConfigDict(dict(name="unet", channels=8, mults=(1, 1, 2), heads=2))
    c.task = ml_collections.ConfigDict(dict(name="diffusion", sample_steps=5))
    c.evals.main = dict(kind="samples", num_samples=16, batch_size=16, use_ema=True)
    c.optim.name, c.optim.lr = "adam", 2e-3
    c.train.steps, c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 60, 20, 0, 0
    c.train.progress, c.train.ema_decay = False, 0.9
    final = train_and_evaluate(c, str(tmp_path), devices=jax.devices()[:1])
    with open(tmp_path / "metrics.jsonl") as f:
        losses = [r["train/loss"] for r in map(json.loads, f) if "train/loss" in r]
    assert losses[-1] < 0.5, losses
    assert 0.0 <= final["eval/pixel_mean"] <= 1.0
    assert (tmp_path / "samples" / "samples_step60.png").exists()


def test_bad_names_fail_clearly():
    with pytest.raises(ValueError, match=r"config.task.schedule='quadratic' is not a noise schedule"):
        tasks.make(dict(name="diffusion", schedule="quadratic"))
    with pytest.raises(ValueError, match=r"sampler='euler' is not a diffusion sampler"):
        tasks.make(dict(name="diffusion", sampler="euler"))
    with pytest.raises(ValueError, match=r"DDIM steps=2000 must be in \[1, 1000\]"):
        tasks.make(dict(name="diffusion", sample_steps=2000))
