"""Model registry and the models of the foundation: shapes, parameter counts, dtypes, remat equivalence."""

import baselines
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import models

# MNIST-1D paper (Greydanus 2020, table 1): logistic 410, MLP 15k, CNN 5k, GRU 5k parameters; LeNet-5 ~61.7k.
CASES = [
    ("logistic", (40,), 410),
    ("mlp", (40,), 15_210),
    ("cnn1d", (40,), 5_210),
    ("gru", (40,), 5_098),
    ("lenet", (28, 28, 1), 61_706),
    ("transformer", (40,), 69_898),  # 128 embed + 2,560 pos + 2 x 33,216 blocks + 128 norm + 650 head
]


def _make(name, shape, **kw):
    with nnx.use_eager_sharding(False):
        return models.make(dict(name=name, **kw), input_shape=shape, num_classes=10, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("name,shape,n_params", CASES)
def test_shapes_and_param_counts(name, shape, n_params):
    model = _make(name, shape)
    x = jax.random.normal(jax.random.key(1), (3, *shape))
    logits = model(x)
    assert logits.shape == (3, 10) and logits.dtype == jnp.float32
    assert sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param))) == n_params


@pytest.mark.parametrize("name,shape,_", CASES)
def test_bf16_compute_keeps_fp32_params(name, shape, _):
    model = _make(name, shape, dtype="bfloat16")
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    x = jax.random.normal(jax.random.key(1), (3, *shape))
    ref = _make(name, shape)(x)
    out = model(x)
    assert out.dtype == jnp.float32
    # Same weights, bf16 compute (8 significand bits, eps 2^-8 = 0.0039). Measured max |out - ref| / max |ref| over
    # param/input seeds 0-3: 0.003-0.006 for logistic/mlp/cnn1d/gru/lenet, up to 0.011 for the transformer; the bar
    # is 3x the worst. Nonzero error shows the compute really ran in bf16.
    err, scale = float(jnp.abs(out - ref).max()), float(jnp.abs(ref).max())
    assert 0 < err <= 0.03 * scale, (err, scale)


@pytest.mark.parametrize("name,shape", [("mlp", (40,)), ("cnn1d", (40,)), ("lenet", (28, 28, 1))])
@pytest.mark.parametrize("policy", ["full", "dots"])
def test_remat_gives_same_gradients(name, shape, policy):
    x = jax.random.normal(jax.random.key(1), (4, *shape))

    def grads(model):
        return nnx.grad(lambda m: jnp.sum(m(x, train=True) ** 2))(model)

    g_ref = jax.tree.leaves(jax.jit(grads)(_make(name, shape)))
    g_remat = jax.tree.leaves(jax.jit(grads)(_make(name, shape, remat=policy)))
    for a, b in zip(g_ref, g_remat, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_registry_errors_name_the_key():
    with pytest.raises(ValueError, match="config.model.name='nope'"):
        models.get_class("nope")
    with pytest.raises(ValueError, match=r"config.model.widht is not an argument of model 'mlp'"):
        models.check_kwargs("mlp", {"widht": 3})
    with pytest.raises(ValueError, match="config.model.remat='sometimes'"):
        _make("mlp", (40,), remat="sometimes")
    with pytest.raises(ValueError, match="lenet expects"):
        _make("lenet", (40,))


def test_dropout_is_deterministic_per_key_and_off_in_eval():
    model = _make("mlp", (40,), dropout=0.5)
    plain = _make("mlp", (40,), dropout=0.0)
    nnx.update(plain, nnx.state(model, nnx.Param))  # the same weights without dropout
    x = jax.random.normal(jax.random.key(1), (2, 40))
    a = model(x, train=True, rngs=nnx.Rngs(dropout=3))
    b = model(x, train=True, rngs=nnx.Rngs(dropout=3))
    c = model(x, train=True, rngs=nnx.Rngs(dropout=4))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    reference = plain(x, train=True, rngs=nnx.Rngs(dropout=3))  # rate 0: the network without dropout
    np.testing.assert_array_equal(model(x), reference)  # eval: dropout off
    assert not np.allclose(a, reference)  # train: dropout on


@pytest.mark.parametrize("name,shape,_", CASES)
def test_every_model_fits_a_batch_under_jit(name, shape, _):
    """The trainer's functional pattern (split -> jitted merge + grad) works for every model and learns."""
    graphdef, params, rest = nnx.split(_make(name, shape), nnx.Param, ...)
    x = jax.random.normal(jax.random.key(1), (16, *shape))
    y = jnp.arange(16) % 10
    prior = baselines.entropy(np.asarray(y))  # 2.25 nats: the best loss of a model that ignores x

    @jax.jit
    def step(params, rest):
        def loss_fn(params):
            logits = nnx.merge(graphdef, params, rest, copy=True)(x, train=True, rngs=nnx.Rngs(dropout=0))
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], -1))

        loss, g = jax.value_and_grad(loss_fn)(params)
        return jax.tree.map(lambda p, g: p - 0.05 * g, params, g), loss

    losses = []
    for _ in range(30):
        params, loss = step(params, rest)
        losses.append(float(loss))
    # fitting these 16 random inputs means using x: 1 nat below the label prior's entropy (a model that ignores x
    # cannot go below it) is ~40 % of the way to zero loss
    assert losses[-1] < prior - 1.0, (prior, losses)
