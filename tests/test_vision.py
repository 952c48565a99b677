"""Vision models (ResNet, ViT, VGG, CNN norms) against the published sizes, and that they fit a tiny batch."""

import baselines
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from offline_data import require_fashion_mnist

from jaxdl import data, models
from jaxdl.models.vision import resnet, vit


def _make(name, shape=(28, 28, 1), num_classes=10, **kw):
    with nnx.use_eager_sharding(False):
        return models.make(dict(name=name, **kw), input_shape=shape, num_classes=num_classes, rngs=nnx.Rngs(0))


def _n_params(model):
    return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _count(name, shape, **kw):
    """Parameter count without allocating (abstract init)."""
    return _n_params(nnx.eval_shape(lambda: _make(name, shape, **kw)))


# He et al. 2016, table 6 (CIFAR-10, 32x32x3): ResNet-20 0.27 M, ResNet-32 0.46 M, ResNet-56 0.85 M, ResNet-110 1.7 M.
@pytest.mark.parametrize("depth,published", [(20, 0.27e6), (32, 0.46e6), (56, 0.85e6), (110, 1.7e6)])
def test_resnet_param_counts_match_the_paper(depth, published):
    n = _count("resnet", (32, 32, 3), depth=depth)
    assert abs(n - published) / published < 0.03, n
    # option-A shortcuts have no parameters: the plain twin has exactly as many
    assert _count("resnet", (32, 32, 3), depth=depth, residual=False) == n


def test_resnet20_exact_count_and_shapes():
    model = _make("resnet", depth=20)  # 28x28x1: the first conv has 3x3x1x16 weights instead of 3x3x3x16
    assert _n_params(model) == 269_722 - 2 * 9 * 16
    out = model(jnp.ones((3, 28, 28, 1)), train=False)
    assert out.shape == (3, 10) and out.dtype == jnp.float32


def test_shortcut_a_subsamples_and_zero_pads():
    x = jnp.arange(2 * 4 * 4 * 2, dtype=jnp.float32).reshape(2, 4, 4, 2)
    y = resnet.shortcut_a(x, 4, 2)
    assert y.shape == (2, 2, 2, 4)
    np.testing.assert_array_equal(y[..., 1:3], x[:, ::2, ::2, :])
    assert float(jnp.abs(y[..., 0]).max()) == 0 and float(jnp.abs(y[..., 3]).max()) == 0


@pytest.mark.parametrize("norm", ["batch", "group", "layer", "none"])
def test_resnet_norms(norm):
    model = _make("resnet", depth=8, norm=norm)
    assert model(jnp.ones((2, 28, 28, 1)), train=True).shape == (2, 10)
    has_stats = bool(jax.tree.leaves(nnx.state(model, nnx.BatchStat)))
    assert has_stats == (norm == "batch")


@pytest.mark.parametrize(
    "name,kw,message",
    [
        ("resnet", dict(depth=21), "config.model.depth=21"),  # not 6n + 2
        ("resnet", dict(depth=2), "config.model.depth=2"),  # 6n + 2 with n = 0
        ("resnet", dict(depth=8, norm="batchnorm"), "config.model.norm='batchnorm'"),
        ("resnet", dict(depth=8, norm="group", groups=5), "config.model.groups=5"),  # 5 does not divide 16 channels
        ("resnet", dict(depth=8, widht=2), "config.model.widht is not an argument of model 'resnet'"),
        ("resnet", dict(depth=8, remat="sometimes"), "config.model.remat='sometimes'"),
        ("resnet", dict(depth=8, dtype="float8"), "dtype 'float8'"),
        ("resnet", dict(shape=(40,)), r"\[height, width, channels\]"),
        ("vgg", dict(norm="bn"), "config.model.norm='bn'"),
        ("vgg", dict(widths=(8, 8, 8, 8, 8)), r"config.model.widths"),  # 5 poolings: 28 -> 0
        ("vit", dict(patch=5), "config.model.patch=5"),  # does not divide 28
        ("vit", dict(patch=7, pool="max"), "config.model.pool='max'"),
        ("vit", dict(dimm=8), "config.model.dimm is not an argument of model 'vit'"),
    ],
    ids=lambda v: ",".join(f"{k}={v[k]}" for k in v) if isinstance(v, dict) else None,
)
def test_bad_arguments_raise_errors_naming_them(name, kw, message):
    with pytest.raises(ValueError, match=message):
        _make(name, **kw)


def test_vit_patches_tokens_and_pooling():
    x = np.arange(2 * 4 * 4 * 3).reshape(2, 4, 4, 3)
    p = np.asarray(vit.patchify(x, 2))
    assert p.shape == (2, 4, 12)
    np.testing.assert_array_equal(p[1, 3], x[1, 2:4, 2:4].reshape(-1))  # patch (1, 1) of image 1, row-major
    kw = dict(patch=4, dim=32, depth=2, heads=2, mlp_dim=64)
    cls, mean = _make("vit", **kw, pool="cls"), _make("vit", **kw, pool="mean")
    assert cls.pos.shape == (50, 32) and mean.pos.shape == (49, 32)  # 7x7 patches (+ class token)
    assert (
        _n_params(cls) == _n_params(mean) + 32 + 32 == _count("vit", (28, 28, 1), **kw, pool="cls")
    )  # the class token and its position
    for m in (cls, mean):
        assert m(jnp.ones((3, 28, 28, 1))).shape == (3, 10)


def test_vit_output_depends_on_patch_order():
    """Position embeddings make the model see where a patch is: swapping two patches changes the logits."""
    model = _make("vit", patch=7, dim=32, depth=1, heads=2, mlp_dim=32)
    x = jax.random.normal(jax.random.key(0), (1, 28, 28, 1))
    swapped = x.at[:, :7, :7].set(x[:, 7:14, 7:14]).at[:, 7:14, 7:14].set(x[:, :7, :7])
    assert not np.allclose(model(x), model(swapped), atol=1e-5)


@pytest.mark.parametrize("name,kw", [("vgg", dict(norm="layer", dropout=0.5)), ("cnn1d", dict(norm="batch"))])
def test_norm_and_dropout_options(name, kw):
    shape = (28, 28, 1) if name == "vgg" else (40,)
    model = _make(name, shape, **kw)
    x = jax.random.normal(jax.random.key(1), (4, *shape))
    assert model(x, train=False).shape == (4, 10)
    if kw.get("dropout"):  # dropout on in training only
        a = model(x, train=True, rngs=nnx.Rngs(dropout=1))
        assert not np.allclose(a, model(x, train=False))


@pytest.fixture(scope="module")
def tiny_fashion(data_dir):
    require_fashion_mnist()
    src = data.load("fashion_mnist", "train", data_dir)
    batch = data.preprocess("fashion_mnist", {k: np.stack([src[i][k] for i in range(64)]) for k in ("image", "label")})
    return jnp.asarray(batch["input"]), jnp.asarray(batch["label"])


@pytest.mark.parametrize(
    "name,kw",
    [
        ("resnet", dict(depth=8, norm="batch")),
        ("vit", dict(patch=7, dim=48, depth=2, heads=2, mlp_dim=96)),
    ],
)
def test_tiny_overfit(tiny_fashion, name, kw):
    """64 real Fashion-MNIST images are memorized; with BatchNorm the eval mode (running averages) agrees."""
    x, y = tiny_fashion
    model = _make(name, **kw)
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt):
        def loss_fn(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(x, train=True), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    losses = [float(step(model, opt)) for _ in range(150)]
    # memorized, far from what ignoring the images allows: the labels' entropy (~2.2 nats) and always predicting
    # the most frequent class (~0.16)
    prior, majority = baselines.entropy(np.asarray(y)), baselines.majority_accuracy(np.asarray(y))
    assert losses[-1] < 0.05 < prior - 2.0 and losses[0] > 0.05, (losses[0], losses[-1], prior)
    acc = float(jnp.mean(jnp.argmax(model(x, train=False), -1) == y))
    assert acc >= 0.95 > majority + 0.5, (acc, majority)
