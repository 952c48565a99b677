"""MobileNetV2 / MBConv (jaxdl.models.vision.mobilenet_v2): block output shapes, residual placement, and the
parameter count against a count by hand from the paper's block definition."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxdl.models.vision import mobilenet_v2 as mb


def _make(**kwargs) -> mb.Model:
    """The model with abstract parameters (shapes only: nothing is computed, so the test stays fast)."""
    with nnx.use_eager_sharding(False):  # sharding metadata only; no mesh here
        return nnx.eval_shape(lambda: mb.Model(**kwargs, rngs=nnx.Rngs(0)))


def _params(module) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _block_by_hand(cin, cout, t, se_squeeze=0):
    """Weights of one inverted residual with BatchNorm (scale + bias per channel), bias-free convolutions."""
    hidden = cin * t
    n = 0
    if t != 1:
        n += cin * hidden + 2 * hidden  # 1x1 expand + BN
    n += 9 * hidden + 2 * hidden  # 3x3 depthwise + BN
    if se_squeeze:
        n += hidden * se_squeeze + se_squeeze + se_squeeze * hidden + hidden  # two 1x1 convs with bias
    n += hidden * cout + 2 * cout  # 1x1 project + BN
    return n


def _model_by_hand(settings, se_ratio=0.0, stem=32, last=256, classes=10):
    n = 9 * 1 * stem + 2 * stem  # 3x3 stem on 1 channel + BN
    cin = stem
    for t, c, reps, _ in settings:
        for _ in range(reps):
            n += _block_by_hand(cin, c, t, max(1, int(cin * se_ratio)) if se_ratio else 0)
            cin = c
    return n + cin * last + 2 * last + last * classes + classes  # 1x1 last + BN, linear head


@pytest.mark.parametrize("se_ratio", [0.0, 0.25])
def test_parameter_count_matches_a_hand_count(se_ratio):
    model = _make(input_shape=(28, 28, 1), num_classes=10, se_ratio=se_ratio)
    assert _params(model) == _model_by_hand(mb.SETTINGS["fmnist"], se_ratio)
    if se_ratio == 0:
        assert 140_000 < _params(model) < 160_000  # the 0.15 M of the module docstring


def test_block_shapes_and_residuals():
    def forward():  # traced by eval_shape: shapes only
        with nnx.use_eager_sharding(False):
            model = mb.Model(input_shape=(28, 28, 1), num_classes=10, rngs=nnx.Rngs(0))
        h, outs = jnp.zeros((2, 28, 28, 32)), []
        for block in model.blocks:
            h = block(h, train=False)
            outs.append(h)
        return outs, model(jnp.zeros((3, 28, 28, 1)))

    outs, logits = jax.eval_shape(forward)
    # stages (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,2,1): a shortcut only where stride 1 and cin == cout
    assert [o.shape[1:] for o in outs] == [
        (28, 28, 16),
        (14, 14, 24),
        (14, 14, 24),
        (7, 7, 32),
        (7, 7, 32),
        (7, 7, 32),
        (7, 7, 64),
        (7, 7, 64),
    ]
    assert logits.shape == (3, 10)
    model = _make(input_shape=(28, 28, 1), num_classes=10)
    assert [b.residual for b in model.blocks] == [False, False, True, False, True, True, False, True]
    # the depthwise conv really is depthwise: one 3x3 filter per channel
    assert model.blocks[1].depthwise.kernel.shape == (3, 3, 1, 16 * 6)


def test_width_rounds_channels_to_multiples_of_eight():
    assert [mb.make_divisible(v) for v in (16 * 0.5, 24 * 0.75, 32 * 1.4, 3)] == [
        8,
        24,
        48,
        8,
    ]  # 18 -> 16 is < 90 % of 18, so 24
    model = _make(input_shape=(28, 28, 1), num_classes=10, width=0.5)
    assert model.blocks[-1].project.kernel.shape[-1] == 32


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="config.model.settings='tiny'"):
        _make(input_shape=(28, 28, 1), num_classes=10, settings="tiny")
    with pytest.raises(ValueError, match="config.model.activation"):
        _make(input_shape=(28, 28, 1), num_classes=10, activation="gelu")
    with pytest.raises(ValueError, match="input_shape"):
        _make(input_shape=(28, 28), num_classes=10)
