"""The MNIST-1D paper setup (greydanus/mnist1d notebooks/models.py + train.py) in our models and trainer:
PyTorch's default initialization (`init="torch"`), torch.nn.GRU's cell (`hidden_bias=True`), the MLP's residual
layer (`residual=True`), the fixed batch order (`config.data.order="sequential"`), and the config that uses them."""

import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import config as config_lib
from jaxdl import models
from jaxdl.data.pipeline import TrainLoader

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments.mnist1d.config import get_config  # noqa: E402


def _make(name, **kw):
    with nnx.use_eager_sharding(False):
        return models.make(dict(name=name, **kw), input_shape=(40,), num_classes=10, rngs=nnx.Rngs(0))


def _params(module) -> dict[str, np.ndarray]:
    flat = nnx.to_flat_state(nnx.state(module, nnx.Param))
    return {
        "/".join(map(str, path)): np.asarray(v.get_value() if hasattr(v, "get_value") else v.value) for path, v in flat
    }


def _check_uniform(p: np.ndarray, bound: float, name: str) -> None:
    """p ~ U(-bound, bound): inside the bounds, and (for enough draws) spread over them with the uniform's std."""
    assert np.all(np.abs(p) <= bound), (name, np.abs(p).max(), bound)
    if p.size >= 100:
        assert np.abs(p).max() > 0.9 * bound, (name, np.abs(p).max(), bound)
        # std of U(-b, b) is b / sqrt(3); 5 standard errors of a std estimate ~ 5 * std / sqrt(2 n)
        assert abs(p.std() - bound / math.sqrt(3)) < 5 * bound / math.sqrt(3) / math.sqrt(2 * p.size), name
    else:
        assert np.any(p != 0), name  # biases start nonzero, unlike Flax's zeros


# torch.nn.Linear / Conv1d: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_features or
# in_channels * kernel_size. Our kernels: Linear [din, dout], Conv [kernel, cin, cout].
@pytest.mark.parametrize("name", ["logistic", "mlp", "cnn1d"])
def test_torch_init_matches_pytorch_default_bounds(name):
    params = _params(_make(name, init="torch"))
    kernels = {k: v for k, v in params.items() if k.endswith("kernel")}
    assert len(kernels) == {"logistic": 1, "mlp": 3, "cnn1d": 4}[name]
    for key, w in kernels.items():
        fan_in = int(np.prod(w.shape[:-1]))
        bound = 1 / math.sqrt(fan_in)
        _check_uniform(w, bound, key)
        bias = params[key.removesuffix("kernel") + "bias"]
        assert bias.shape == (w.shape[-1],)
        _check_uniform(bias, bound, key + " bias")


def test_torch_init_of_the_gru_is_uniform_over_the_hidden_size():
    params = _params(_make("gru", init="torch", hidden_bias=True))
    gru = {k: v for k, v in params.items() if not k.startswith("head")}
    assert len(gru) == 8  # (input kernel, input bias, hidden kernel, hidden bias) x 2 directions
    for key, p in gru.items():  # torch.nn.GRU: every parameter ~ U(-1/sqrt(hidden), 1/sqrt(hidden))
        _check_uniform(p, 1 / math.sqrt(6), key)
    _check_uniform(params["head/kernel"], 1 / math.sqrt(480), "head")
    _check_uniform(params["head/bias"], 1 / math.sqrt(480), "head bias")


def test_flax_init_is_still_the_default():
    for name in ("logistic", "mlp", "cnn1d", "gru"):
        plain, flax_init = _params(_make(name)), _params(_make(name, init="flax"))
        assert plain.keys() == flax_init.keys()
        assert all(np.array_equal(plain[k], flax_init[k]) for k in plain), name
        assert all(not np.any(v) for k, v in plain.items() if k.endswith("bias")), name  # Flax: zero biases
    with pytest.raises(ValueError, match="init='kaiming'"):
        _make("mlp", init="kaiming")


def test_hidden_bias_gru_is_torch_gru():
    """Our bidirectional GRU with hidden_bias=True computes torch.nn.GRU's equations (5,134 params, as GRUBase)."""
    model = _make("gru", init="torch", hidden_bias=True)
    assert sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param))) == 5_134
    x = np.asarray(jax.random.normal(jax.random.key(1), (3, 40)), np.float64)
    p = {k: np.asarray(v, np.float64) for k, v in _params(model).items()}
    sig = lambda v: 1 / (1 + np.exp(-v))

    def direction(prefix, seq):
        w_i, b_i = p[f"{prefix}/cell/dense_i/kernel"], p[f"{prefix}/cell/dense_i/bias"]
        w_h, b_h = p[f"{prefix}/cell/dense_h/kernel"], p[f"{prefix}/cell/dense_h/bias"]
        h, out = np.zeros((3, 6)), []
        for t in range(seq.shape[1]):
            gi, gh = seq[:, t, None] @ w_i + b_i, h @ w_h + b_h
            r, z = sig(gi[:, :6] + gh[:, :6]), sig(gi[:, 6:12] + gh[:, 6:12])
            n = np.tanh(gi[:, 12:] + r * gh[:, 12:])  # b_hn inside the reset gate, as torch
            h = (1 - z) * n + z * h
            out.append(h)
        return np.stack(out, 1)

    fwd, bwd = direction("forward", x), direction("backward", x[:, ::-1])[:, ::-1]
    feats = np.concatenate([fwd, bwd], -1).reshape(3, -1)  # [batch, time * 2 * hidden], torch's output order
    want = feats @ p["head/kernel"] + p["head/bias"]
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(x, jnp.float32))), want, rtol=1e-4, atol=1e-5)


def test_residual_mlp_is_the_papers_mlpbase():
    model = _make("mlp", residual=True)
    p = {k: np.asarray(v, np.float64) for k, v in _params(model).items()}
    x = np.asarray(jax.random.normal(jax.random.key(2), (4, 40)), np.float64)
    lin = lambda h, name: h @ p[f"{name}/kernel"] + p[f"{name}/bias"]
    h = np.maximum(lin(x, "blocks/0/linear"), 0)
    h = h + np.maximum(lin(h, "blocks/1/linear"), 0)  # MLPBase: h = h + linear2(h).relu()
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(x, jnp.float32))), lin(h, "head"), rtol=1e-4, atol=1e-5)
    plain = np.asarray(_make("mlp")(jnp.asarray(x, jnp.float32)))
    assert not np.allclose(plain, lin(h, "head"), atol=1e-3)  # default: no residual


def test_sequential_order_reads_fixed_batches():
    source = list(range(4000))
    seq = TrainLoader(source, dataset="mnist1d", global_batch_size=100, seed=3, order="sequential")
    for step in (0, 1, 39, 40, 41, 7999):  # train.py: bix = (step * 100) % 4000; x[bix:bix + 100]
        bix = (step * 100) % 4000
        np.testing.assert_array_equal(seq.global_indices(step), np.arange(bix, bix + 100))
    shuffled = TrainLoader(source, dataset="mnist1d", global_batch_size=100, seed=3)
    assert not np.array_equal(shuffled.global_indices(0), np.arange(100))
    assert not np.array_equal(shuffled.global_indices(40), shuffled.global_indices(0))  # a new permutation per epoch
    with pytest.raises(ValueError, match="config.data.order='random'"):
        TrainLoader(source, dataset="mnist1d", global_batch_size=100, seed=3, order="random")


def test_paper_config_follows_the_authors_code():
    for model in ("logistic", "mlp", "cnn", "gru"):
        c = config_lib.validate(get_config(model))
        assert (c.data.order, c.model.init, c.train.steps, c.data.batch_size) == ("sequential", "torch", 8000, 100)
        assert (c.optim.name, c.optim.lr, c.optim.weight_decay) == ("adam", 1e-2, 0.0)
        old = config_lib.validate(get_config(model + ",defaults"))  # the table's setup before it followed them
        assert (old.data.order, old.model.init, old.train.steps) == ("shuffle", "flax", 6000)
        assert dict(old.model) == {"name": c.model.name, "init": "flax"}
    assert get_config("mlp").model.residual and get_config("gru").model.hidden_bias
    bad = get_config("cnn")
    bad.data.order = "random"
    with pytest.raises(ValueError, match="config.data.order"):
        config_lib.validate(bad)


def test_paper_shuffled_variant_uses_the_authors_permutation(data_dir):
    from jaxdl import data
    from jaxdl.data import mnist1d

    np.random.seed(42)  # the notebook's "Shuffle the pixels" cell, verbatim
    shuffled_order = np.random.permutation(40)
    np.testing.assert_array_equal(mnist1d.PAPER_PERMUTATION, shuffled_order)
    src = data.load("mnist1d", "test", data_dir)
    raw = data.memory.read(src, np.arange(10))
    plain, shuffled = data.preprocess("mnist1d", raw), data.preprocess("mnist1d_shuffled_paper", raw)
    np.testing.assert_array_equal(shuffled["input"], plain["input"][:, shuffled_order])  # data_shuff['x'][:, order]
    np.testing.assert_array_equal(shuffled["label"], plain["label"])
    assert get_config("cnn,shuffled").data.name == "mnist1d_shuffled_paper"
    assert get_config("cnn,shuffled,defaults").data.name == "mnist1d_shuffled"
