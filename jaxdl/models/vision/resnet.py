"""CIFAR-style ResNets (He et al. 2016, section 4.2): ResNet-20/32/56/110 = depth 6n+2, and their plain twins.

[b,h,w,c] -> conv3x3 16 -> 3 stages of n blocks (16, 32, 64 channels; stride 2 entering stages 2 and 3) ->
global average pool -> logits. A block is conv3x3-norm-relu-conv3x3-norm (+ shortcut) -relu. The shortcut is
option A of the paper (identity; where the shape changes, subsample by 2 and zero-pad the new channels: no
parameters), so ResNet-20 has 0.27 M parameters as in the paper's table 6. `residual=False` removes the shortcuts
(the paper's "plain" nets). `norm` is batch (the paper), group, layer or none.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.conv import conv2d
from jaxdl.layers.dense import dense
from jaxdl.layers.norm import apply_norm, check_norm, make_norm
from jaxdl.layers.remat import remat as remat_fn

WIDTHS = (16, 32, 64)


def shortcut_a(x: jax.Array, cout: int, stride: int) -> jax.Array:
    """Option A: identity, or subsample by `stride` and zero-pad channels up to `cout`."""
    if stride > 1:
        x = x[:, ::stride, ::stride, :]
    extra = cout - x.shape[-1]
    if extra:
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    return x


class Block(nnx.Module):
    def __init__(self, cin: int, cout: int, stride: int, *, norm: str, groups: int, residual: bool, **kw):
        nkw = dict(groups=groups, dtype=kw["dtype"], param_dtype=kw["param_dtype"], rngs=kw["rngs"])
        self.conv1, self.norm1 = conv2d(cin, cout, 3, stride, **kw), make_norm(norm, cout, **nkw)
        self.conv2, self.norm2 = conv2d(cout, cout, 3, 1, **kw), make_norm(norm, cout, **nkw)
        self.cout, self.stride, self.residual = cout, stride, residual

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        h = nnx.relu(apply_norm(self.norm1, self.conv1(x), train))
        h = apply_norm(self.norm2, self.conv2(h), train)
        if self.residual:
            h = h + shortcut_a(x, self.cout, self.stride).astype(h.dtype)
        return nnx.relu(h)


class Model(nnx.Module):
    """[batch, height, width, channels] -> logits [batch, num_classes] (float32)."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        depth: int = 20,
        norm: str = "batch",
        groups: int = 8,
        residual: bool = True,
        width: int = 1,
        dtype: str = "float32",
        param_dtype: str = "float32",
        remat: str = "none",
        rngs: nnx.Rngs,
    ):
        """depth = 6n + 2 (20, 32, 44, 56, 110); width multiplies the 16/32/64 channels; groups: GroupNorm."""
        if len(input_shape) != 3:
            raise ValueError(f"resnet expects [height, width, channels] inputs, got input_shape={input_shape}")
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"config.model.depth={depth}: a CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, 110)")
        check_norm(norm)
        n = (depth - 2) // 6
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        widths = [w * width for w in WIDTHS]
        self.stem = conv2d(input_shape[-1], widths[0], 3, 1, **kw)
        self.stem_norm = make_norm(norm, widths[0], groups=groups, **kw)
        blocks, cin = [], widths[0]
        for stage, cout in enumerate(widths):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(Block(cin, cout, stride, norm=norm, groups=groups, residual=residual, **kw))
                cin = cout
        self.blocks = nnx.List(blocks)
        self.head = dense(cin, num_classes, ("embed", "vocab"), **kw)
        self.remat = remat

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        del rngs  # no dropout
        h = nnx.relu(apply_norm(self.stem_norm, self.stem(x), train))
        block_fn = remat_fn(lambda block, h: block(h, train), self.remat)
        for block in self.blocks:
            h = block_fn(block, h)
        return self.head(h.mean(axis=(1, 2))).astype(jnp.float32)
