"""The convolutional backbone and feature pyramid shared by the dense-prediction models (fcos, seg_unet).

`Backbone`: [b, H, W, c] -> features at strides 2, 4, 8, 16 (the CIFAR ResNet family of jaxdl.models.vision.resnet:
a 3x3 stem conv at stride 2, then one residual `resnet.Block` per stage, channels width x (1, 2, 4, 8), stride 2
entering stages 2-4). `FPN` (Lin et al. 2017): 1x1 lateral convs to `features` channels, nearest-neighbour
top-down additions, a 3x3 output conv per level.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.conv import conv2d
from jaxdl.layers.norm import apply_norm, check_norm, make_norm
from jaxdl.models.vision.resnet import Block


def check_input_shape(model: str, input_shape, multiple: int = 16) -> None:
    """The backbone's stride-16 stage needs [height, width, channels] inputs with height and width multiples of 16."""
    if len(input_shape) != 3 or input_shape[0] % multiple or input_shape[1] % multiple:
        raise ValueError(
            f"{model} expects [height, width, channels] inputs with height and width multiples of {multiple}, "
            f"got input_shape={input_shape}"
        )


class Backbone(nnx.Module):
    """[b, H, W, c] -> [C2, C3, C4, C5]: strides 2, 4, 8, 16 with `channels` = width x (1, 2, 4, 8)."""

    def __init__(self, cin: int, *, width: int, norm: str, groups: int, dtype: str, param_dtype: str, rngs):
        check_norm(norm)
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.channels = tuple(width * m for m in (1, 2, 4, 8))
        self.stem = conv2d(cin, self.channels[0], 3, 2, **kw)
        self.stem_norm = make_norm(norm, self.channels[0], groups=groups, **kw)
        blocks, c = [], self.channels[0]
        for i, cout in enumerate(self.channels):
            blocks.append(Block(c, cout, 1 if i == 0 else 2, norm=norm, groups=groups, residual=True, **kw))
            c = cout
        self.blocks = nnx.List(blocks)

    def __call__(self, x: jax.Array, train: bool) -> list[jax.Array]:
        h = nnx.relu(apply_norm(self.stem_norm, self.stem(x), train))
        out = []
        for block in self.blocks:
            h = block(h, train)
            out.append(h)
        return out


def upsample2(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2: [b, h, w, c] -> [b, 2h, 2w, c]."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class FPN(nnx.Module):
    """Backbone levels [b, h_i, w_i, c_i] (each half the previous) -> same levels with `features` channels."""

    def __init__(self, channels: tuple[int, ...], features: int, **kw):
        self.lateral = nnx.List([conv2d(c, features, 1, bias=True, **kw) for c in channels])
        self.output = nnx.List([conv2d(features, features, 3, bias=True, **kw) for _ in channels])

    def __call__(self, levels: list[jax.Array]) -> list[jax.Array]:
        lat = [f(x) for f, x in zip(self.lateral, levels, strict=True)]
        merged = [lat[-1]]
        for x in reversed(lat[:-1]):
            merged.insert(0, x + upsample2(merged[0]))
        return [f(x) for f, x in zip(self.output, merged, strict=True)]
