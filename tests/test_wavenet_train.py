"""The `waveform` task and `waveform_nll` evaluator: the LPC baseline against a known AR process and the normal CDF,
and a short WaveNet training on real recorded speech (Asterisk prompts) whose held-out NLL beats the unigram
entropy of the training codes by a clear margin."""

import os

import jax
import ml_collections
import numpy as np
import pytest
from scipy.stats import norm

from jaxdl import config as config_lib
from jaxdl.audio import mulaw
from jaxdl.data import asterisk
from jaxdl.evaluators.waveform_nll import gaussian_code_logprob, lpc_fit, residual_scale


def test_lpc_fit_recovers_an_ar_process():
    """x_t = 1.3 x_{t-1} - 0.6 x_{t-2} + e_t (stable AR(2)): least squares finds the coefficients and the noise std."""
    rng = np.random.default_rng(0)
    signals = []
    for _ in range(3):
        e = rng.normal(0, 0.01, 20000)
        x = np.zeros_like(e)
        for t in range(2, len(e)):
            x[t] = 1.3 * x[t - 1] - 0.6 * x[t - 2] + e[t]
        signals.append(x)
    a, sigma = lpc_fit(signals, order=4)
    np.testing.assert_allclose(a, [1.3, -0.6, 0.0, 0.0], atol=0.02)
    assert abs(sigma - 0.01) < 5e-4
    with pytest.raises(ValueError, match="order"):
        lpc_fit(signals, order=0)


def test_discretized_gaussian_is_a_distribution_over_codes():
    codes = np.arange(256)
    for mean, sigma in ((0.0, 0.01), (0.3, 0.05), (-0.9, 0.002), (0.999, 0.3)):
        logp = gaussian_code_logprob(np.full(256, mean), sigma, codes)
        assert np.all(np.isfinite(logp))
        np.testing.assert_allclose(np.exp(logp).sum(), 1.0, rtol=1e-9)
        # an independent evaluation with scipy's CDF where differences of CDFs are accurate
        edges = mulaw.bin_edges()
        direct = norm.cdf((edges[1:] - mean) / sigma) - norm.cdf((edges[:-1] - mean) / sigma)
        ok = direct > 1e-6
        np.testing.assert_allclose(np.exp(logp[ok]), direct[ok], rtol=1e-6)


def test_residual_scale_is_the_causal_windowed_rms():
    rng = np.random.default_rng(1)
    x, a, w, floor = rng.normal(size=300), np.array([0.5, -0.2, 0.1]), 20, 1e-3
    got = residual_scale(x, a, w, floor)
    for t in range(len(x)):
        if t < 3 + w:
            assert np.isnan(got[t])
            continue
        e = [x[u] - a @ x[u - 3 : u][::-1] for u in range(t - w, t)]  # residuals strictly before t
        np.testing.assert_allclose(got[t], np.sqrt(np.mean(np.square(e)) + floor**2), rtol=1e-10)


def test_bad_task_options_name_the_key():
    from jaxdl.tasks.waveform import Task

    with pytest.raises(ValueError, match="config.task.crop=450 must be a multiple of config.task.hop=80"):
        Task(crop=450, hop=80)
    with pytest.raises(ValueError, match="batch_size=0"):
        Task(batch_size=0)
    with pytest.raises(ValueError, match="split 'valid'"):
        Task().waves("valid")


_HAVE_ASTERISK = all(
    os.path.exists(os.environ.get(var) or default)
    for var, default in (("JAXDL_ASTERISK_ROOT", asterisk.ROOT), ("JAXDL_ASTERISK_TRANSCRIPTS", asterisk.TRANSCRIPTS))
)


@pytest.mark.slow
@pytest.mark.skipif(not _HAVE_ASTERISK, reason=f"needs the Asterisk prompts: {asterisk.INSTALL}")
def test_short_training_beats_unigram_entropy(tmp_path):
    from jaxdl.train import train_and_evaluate

    c = config_lib.base()
    c.data.name = ""
    c.task = ml_collections.ConfigDict(dict(name="waveform", batch_size=8, crop=400, hop=80, max_files=8))
    c.model = ml_collections.ConfigDict(dict(name="wavenet", layers=6, stacks=1, residual=16, skip=32))
    c.evals = ml_collections.ConfigDict(dict(main=dict(kind="waveform_nll", window=800, warmup=160, batch_size=8)))
    c.optim.name, c.optim.lr, c.optim.clip_norm = "adam", 3e-3, 1.0
    c.train.steps, c.train.log_every = 150, 50
    c.train.eval_every = c.train.checkpoint_every = 0
    c.train.progress = False
    final = train_and_evaluate(c, str(tmp_path), devices=jax.devices()[:1])
    entropy, bits = final["eval/train_entropy_bits"], final["eval/bits_per_sample"]
    assert bits < entropy - 1.0, final
    assert final["eval/unigram_bits_per_sample"] > bits + 1.0
    # every sample of every test file from the first window's warmup to the last window's end, scored once
    from jaxdl.tasks.waveform import Task

    task = Task(crop=400, hop=80, max_files=8)
    expected = 0
    for n in task.waves("test").lengths:
        last = (int(n) - 800) // 80
        expected += last * 80 + 800 - (80 + 160) if last >= 1 else 0
    assert final["eval/samples"] == expected > 0


@pytest.mark.parametrize("arg", ["uncond", "cond", "cond,smoke,seed=1"])
def test_study_configs_validate(arg):
    from jaxdl.ablate import _load_module

    c = config_lib.validate(_load_module("experiments/speech/wavenet.py").get_config(arg))
    assert c.task.name == "waveform" and (c.model.cond_channels > 0) == ("cond" in arg.split(","))
    assert c.model.cond_channels in (0, c.task.n_mels) and c.model.hop == c.task.hop
    with pytest.raises(ValueError, match="kind"):
        _load_module("experiments/speech/wavenet.py").get_config("both")
