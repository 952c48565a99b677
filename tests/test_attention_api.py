"""kernels.attention.api: dispatch, fallbacks that say why, errors that name the argument, and the model calling
the kernels: a transformer trained with attention_impl=pallas|triton launches those kernels (counted at the
kernels' entry points) and follows the impl=xla loss curve. Results are checked against a float64 numpy attention."""

import logging

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from attention_helpers import HAS_TRITON, count_kernel_launches, kernels_of, numpy_attention

from jaxdl import config as config_lib
from jaxdl.metrics import read_metrics
from jaxdl.train import train_and_evaluate
from kernels.attention import api

pytestmark = pytest.mark.portable
ON_GPU = jax.default_backend() == "gpu"


def _qkv(b=1, s=24, hq=2, hkv=2, d=16, dtype=jnp.float32, seed=0):
    ks = jax.random.split(jax.random.key(seed), 3)
    return (
        jax.random.normal(ks[0], (b, s, hq, d), dtype),
        jax.random.normal(ks[1], (b, s, hkv, d), dtype),
        jax.random.normal(ks[2], (b, s, hkv, d), dtype),
    )


def _rel_err(got, want) -> float:
    got = np.asarray(jnp.asarray(got, jnp.float32), np.float64)
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.cpu_only("asserts what impl='auto' picks on a CPU backend")
def test_auto_on_cpu_uses_xla_and_says_why(caplog, monkeypatch):
    q, k, v = _qkv()
    launches = count_kernel_launches(monkeypatch)
    api._log_once.cache_clear()
    with caplog.at_level(logging.INFO, logger="kernels.attention.api"):
        out = api.attention(q, k, v, causal=True)
    assert "auto on cpu: xla" in caplog.text
    assert kernels_of(launches) == {"xla"}
    assert _rel_err(out, numpy_attention(q, k, v, causal=True)) < 1e-5


@pytest.mark.gpu
def test_gpu_auto_runs_the_triton_kernels(monkeypatch):
    """On a GPU with jax-triton, impl="auto" launches our Triton kernels, forward and backward, and is right."""
    pytest.importorskip("jax_triton", reason="impl='auto' picks the Triton kernels only with jax-triton installed")
    q, k, v = _qkv(b=2, s=1024, hq=8, hkv=2, d=128, dtype=jnp.bfloat16)
    launches = count_kernel_launches(monkeypatch)
    assert api.choose("auto", q, k, causal=True, segments=False, window=None) == ("triton", None)
    out, vjp = jax.vjp(lambda q: api.attention(q, k, v, causal=True), q)
    (dq,) = vjp(jnp.ones_like(out))
    assert kernels_of(launches) == {"triton"}
    for name in ("flash_attention_fwd", "flash_attention_dkv", "flash_attention_dq"):
        assert launches[f"triton:{name}"] >= 1, launches
    assert _rel_err(out, numpy_attention(q, k, v, causal=True)) < 2e-2
    assert np.isfinite(np.asarray(dq, np.float32)).all()


def test_explicit_impls_never_fall_back_silently():
    q, k, v = _qkv()  # float32: cudnn can never compute it
    why = "cudnn needs bf16/fp16 inputs" if ON_GPU else "cudnn needs a GPU"
    with pytest.raises(ValueError, match=f"impl='cudnn' cannot compute this call: {why}"):
        api.attention(q, k, v, impl="cudnn")
    with pytest.raises(ValueError, match="impl='flash'"):
        api.attention(q, k, v, impl="flash")


def test_bad_shapes_name_the_argument():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"^k: "):
        api.attention(q, k[0], v)
    with pytest.raises(ValueError, match="window"):
        api.attention(q, k, v, window=(1, 2, 3))


@pytest.mark.parametrize("impl", ["xla", "pallas", pytest.param("triton", marks=pytest.mark.skipif(
    not HAS_TRITON, reason="triton is not installed"))])  # fmt: skip
@pytest.mark.parametrize("causal", [False, True])
def test_explicit_impl_runs_that_kernel_and_matches_numpy(monkeypatch, impl, causal):
    """Through the api, each impl launches its own kernels (and only those) and agrees with float64 numpy."""
    q, k, v = _qkv(s=40, hq=4, hkv=2, d=32)
    launches = count_kernel_launches(monkeypatch)
    out = jax.jit(lambda q, k, v: api.attention(q, k, v, causal=causal, impl=impl))(q, k, v)
    assert kernels_of(launches) == {impl}
    assert _rel_err(out, numpy_attention(q, k, v, causal=causal)) < 1e-5


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
        launches = count_kernel_launches(mp)
        train_and_evaluate(c, str(workdir), devices=jax.devices()[:1])
    ran = kernels_of(launches)
    if impl == "xla":
        assert not ran & {"pallas", "triton", "cudnn"}, launches
    else:  # the model must have run the requested kernel, forward and backward, and nothing else
        assert ran == {impl}, launches
        for name in ("flash_attention_fwd", "flash_attention_dkv", "flash_attention_dq"):
            assert launches[f"{impl}:{name}"] >= 1, launches
    return np.array([r["train/loss"] for r in read_metrics(workdir) if "train/loss" in r])


@pytest.fixture(scope="module")
def xla_curve(data_dir, tmp_path_factory):
    return _train(data_dir, tmp_path_factory.mktemp("xla"), "xla", 4)


@pytest.mark.slow
def test_model_trained_with_pallas_attention_follows_xla(xla_curve, data_dir, tmp_path):
    np.testing.assert_allclose(_train(data_dir, tmp_path, "pallas", 4), xla_curve, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_model_trained_with_triton_attention_follows_xla(xla_curve, data_dir, tmp_path):
    np.testing.assert_allclose(_train(data_dir, tmp_path, "triton", 4), xla_curve, rtol=1e-4)
