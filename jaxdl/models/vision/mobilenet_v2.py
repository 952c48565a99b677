"""MobileNetV2 (Sandler et al. 2018) for small images, with EfficientNet-B0's MBConv options (Tan & Le 2019).

[b, h, w, c] -> conv3x3 (stride 1: 28x28 inputs keep their resolution, as CIFAR ports of MobileNetV2 do) -> norm
-> act -> inverted residual blocks -> conv1x1 to `last_channels` -> norm -> act -> global average pool -> linear.

Inverted residual block (cin -> cout, expansion t, stride s): conv1x1 cin -> t*cin, norm, act (skipped when t = 1)
-> depthwise conv3x3 stride s, norm, act -> [squeeze-excitation] -> conv1x1 -> cout, norm (linear bottleneck, no
activation) -> + x when s = 1 and cin = cout. Convolutions have no bias (a norm follows each).
Squeeze-excitation (`se_ratio` > 0; EfficientNet's MBConv): global average pool -> conv1x1 (with bias) to
max(1, int(cin * se_ratio)) -> act -> conv1x1 (with bias) back to t*cin -> sigmoid -> scale the channels.
`activation`: "relu6" (MobileNetV2) or "swish" (EfficientNet).

SETTINGS (t, c, n, s) per stage: n blocks of expansion t and c channels, the first with stride s. The default
"fmnist" stages (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,2,1) bring 28x28 to 7x7 and give 0.15 M parameters at
width 1 (ResNet-20 has 0.27 M); "imagenet" is the paper's table 2 (2.2 M with a 10-class head, stride 1 stem).
Channels are width * c rounded to a multiple of 8 (the reference `_make_divisible`).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.conv import conv2d
from jaxdl.layers.dense import dense
from jaxdl.layers.norm import apply_norm, check_norm, make_norm
from jaxdl.layers.remat import remat as remat_fn

SETTINGS = {
    "fmnist": ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 2, 1)),
    "imagenet": (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ),
}
ACTIVATIONS = {"relu6": jax.nn.relu6, "swish": jax.nn.swish}


def make_divisible(v: float, divisor: int = 8) -> int:
    """The reference implementation's channel rounding: nearest multiple of `divisor`, never below 90 % of v."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class SqueezeExcite(nnx.Module):
    """[b, h, w, c] -> the same, channels scaled by sigmoid(W2 act(W1 mean_hw(x) + b1) + b2)."""

    def __init__(self, channels: int, squeeze: int, act, **kw):
        self.reduce = conv2d(channels, squeeze, 1, bias=True, **kw)
        self.expand = conv2d(squeeze, channels, 1, bias=True, **kw)
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        s = self.expand(self.act(self.reduce(x.mean(axis=(1, 2), keepdims=True))))
        return x * jax.nn.sigmoid(s)


class InvertedResidual(nnx.Module):
    """MobileNetV2 block (MBConv with `se_ratio` > 0): [b, h, w, cin] -> [b, h/stride, w/stride, cout]."""

    def __init__(self, cin: int, cout: int, expansion: int, stride: int, *, norm, se_ratio, act, **kw):
        hidden = cin * expansion
        nkw = dict(dtype=kw["dtype"], param_dtype=kw["param_dtype"], rngs=kw["rngs"])
        if expansion != 1:
            self.expand, self.expand_norm = conv2d(cin, hidden, 1, **kw), make_norm(norm, hidden, **nkw)
        else:
            self.expand = self.expand_norm = None
        self.depthwise = conv2d(hidden, hidden, 3, stride, groups=hidden, **kw)
        self.depthwise_norm = make_norm(norm, hidden, **nkw)
        self.se = SqueezeExcite(hidden, max(1, int(cin * se_ratio)), act, **kw) if se_ratio > 0 else None
        self.project, self.project_norm = conv2d(hidden, cout, 1, **kw), make_norm(norm, cout, **nkw)
        self.residual = stride == 1 and cin == cout
        self.act = act

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        h = x
        if self.expand is not None:
            h = self.act(apply_norm(self.expand_norm, self.expand(h), train))
        h = self.act(apply_norm(self.depthwise_norm, self.depthwise(h), train))
        if self.se is not None:
            h = self.se(h)
        h = apply_norm(self.project_norm, self.project(h), train)
        return h + x.astype(h.dtype) if self.residual else h


class Model(nnx.Module):
    """[batch, height, width, channels] -> logits [batch, num_classes] (float32)."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        settings: str = "fmnist",
        width: float = 1.0,
        stem_channels: int = 32,
        last_channels: int = 256,
        se_ratio: float = 0.0,
        activation: str = "relu6",
        norm: str = "batch",
        dropout: float = 0.0,
        dtype: str = "float32",
        param_dtype: str = "float32",
        remat: str = "none",
        rngs: nnx.Rngs,
    ):
        """settings: a key of SETTINGS; width multiplies every channel count (stem and last included; the last
        conv is never narrowed below `last_channels`, as in the paper); se_ratio > 0 adds squeeze-excitation
        (EfficientNet: 0.25); dropout before the classifier."""
        if len(input_shape) != 3:
            raise ValueError(f"mobilenet_v2 expects [height, width, channels] inputs, got input_shape={input_shape}")
        if settings not in SETTINGS:
            raise ValueError(f"config.model.settings={settings!r}: choose one of {sorted(SETTINGS)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"config.model.activation={activation!r}: choose one of {sorted(ACTIVATIONS)}")
        if width <= 0 or not 0 <= se_ratio <= 1 or not 0 <= dropout < 1:
            raise ValueError(
                f"config.model: width={width} must be > 0, se_ratio={se_ratio} and dropout={dropout} in [0, 1)"
            )
        check_norm(norm)
        act = ACTIVATIONS[activation]
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        cin = make_divisible(stem_channels * width)
        self.stem, self.stem_norm = conv2d(input_shape[-1], cin, 3, **kw), make_norm(norm, cin, **kw)
        blocks = []
        for t, c, n, s in SETTINGS[settings]:
            cout = make_divisible(c * width)
            for i in range(n):
                blocks.append(
                    InvertedResidual(cin, cout, t, s if i == 0 else 1, norm=norm, se_ratio=se_ratio, act=act, **kw)
                )
                cin = cout
        self.blocks = nnx.List(blocks)
        last = make_divisible(last_channels * max(1.0, width))
        self.last, self.last_norm = conv2d(cin, last, 1, **kw), make_norm(norm, last, **kw)
        self.dropout = nnx.Dropout(dropout)
        self.head = dense(last, num_classes, ("embed", "vocab"), **kw)
        self.act, self.remat = act, remat

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        h = self.act(apply_norm(self.stem_norm, self.stem(x), train))
        block_fn = remat_fn(lambda block, h: block(h, train), self.remat)
        for block in self.blocks:
            h = block_fn(block, h)
        h = self.act(apply_norm(self.last_norm, self.last(h), train)).mean(axis=(1, 2))
        h = self.dropout(h, deterministic=not train, rngs=rngs)
        return self.head(h).astype(jnp.float32)
