"""kernels.attention.api: dispatch, fallbacks that say why, errors that name the argument, and the model calling
the kernels: a transformer trained with attention_impl=pallas|triton follows the impl=xla loss curve."""

import importlib.util
import logging

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxdl import config as config_lib
from jaxdl.metrics import read_metrics
from jaxdl.train import train_and_evaluate
from kernels.attention import api, reference


def _qkv(b=1, s=24, hq=2, hkv=2, d=16, dtype=jnp.float32, seed=0):
    ks = jax.random.split(jax.random.key(seed), 3)
    return (
        jax.random.normal(ks[0], (b, s, hq, d), dtype),
        jax.random.normal(ks[1], (b, s, hkv, d), dtype),
        jax.random.normal(ks[2], (b, s, hkv, d), dtype),
    )


def test_auto_on_cpu_uses_xla_and_says_why(caplog):
    q, k, v = _qkv()
    api._log_once.cache_clear()
    with caplog.at_level(logging.INFO, logger="kernels.attention.api"):
        out = api.attention(q, k, v, causal=True)
    assert "auto on cpu: xla" in caplog.text
    np.testing.assert_allclose(out, reference.attention(q, k, v, causal=True), rtol=1e-6, atol=1e-6)


def test_explicit_impls_never_fall_back_silently():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="impl='cudnn' cannot compute this call: cudnn needs a GPU"):
        api.attention(q, k, v, impl="cudnn")
    with pytest.raises(ValueError, match="impl='flash'"):
        api.attention(q, k, v, impl="flash")


def test_bad_shapes_name_the_argument():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"^k: "):
        api.attention(q, k[0], v)
    with pytest.raises(ValueError, match="window"):
        api.attention(q, k, v, window=(1, 2, 3))


@pytest.mark.parametrize("causal", [False, True])
def test_pallas_impl_matches_xla_through_the_api(causal):
    q, k, v = _qkv(s=40, hq=4, hkv=2, d=32)
    f = lambda impl: jax.jit(lambda q, k, v: api.attention(q, k, v, causal=causal, impl=impl))(q, k, v)
    np.testing.assert_allclose(f("pallas"), f("xla"), rtol=1e-5, atol=1e-5)


def _train(data_dir, workdir, impl, steps):
    """Train-loss curve of a tiny transformer with attention `impl`; the final eval sees 32 test examples only (the
    kernels run in interpreters here, and only the training curve is compared)."""
    from jaxdl import data
    from jaxdl.data.subset import Subset

    c = config_lib.base()
    c.data.name, c.data.data_dir = "mnist1d", data_dir
    c.data.batch_size, c.data.eval_batch_size = 16, 32
    c.model = ml_collections.ConfigDict(
        dict(name="transformer", depth=2, dim=64, heads=2, mlp_dim=64, attention_impl=impl)
    )
    c.optim.name, c.optim.lr = "adam", 3e-3
    c.train.steps, c.train.log_every, c.train.eval_every, c.train.checkpoint_every = steps, 1, 0, 0
    c.train.progress = False
    load = data.load
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data, "load", lambda n, s, d=None: Subset(load(n, s, d), np.arange(32)) if s == "test" else load(n, s, d))  # fmt: skip
        train_and_evaluate(c, str(workdir), devices=jax.devices()[:1])
    return np.array([r["train/loss"] for r in read_metrics(workdir) if "train/loss" in r])


@pytest.fixture(scope="module")
def xla_curve(data_dir, tmp_path_factory):
    return _train(data_dir, tmp_path_factory.mktemp("xla"), "xla", 4)


@pytest.mark.slow
def test_model_trained_with_pallas_attention_follows_xla(xla_curve, data_dir, tmp_path):
    np.testing.assert_allclose(_train(data_dir, tmp_path, "pallas", 4), xla_curve, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_model_trained_with_triton_attention_follows_xla(xla_curve, data_dir, tmp_path):
    np.testing.assert_allclose(_train(data_dir, tmp_path, "triton", 4), xla_curve, rtol=1e-4)
