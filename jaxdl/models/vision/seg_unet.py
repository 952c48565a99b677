"""U-Net (Ronneberger et al. 2015) for semantic segmentation (`seg_unet`; the diffusion ε-network is jaxdl.models.generative.unet), on the residual backbone of the detection models.

[b, H, W, c] -> encoder `_pyramid.Backbone` (features at strides 2, 4, 8, 16; channels width x (1, 2, 4, 8)) plus
a full-resolution stem (3x3 conv, `width` channels) -> decoder: from stride 16 up, at each level nearest x2
upsampling, concatenation with the encoder skip, two (3x3 conv, norm, ReLU) -> 1x1 conv -> per-pixel logits
float32 [b, H, W, num_classes].
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.conv import conv2d
from jaxdl.layers.norm import apply_norm, make_norm
from jaxdl.models.vision._pyramid import Backbone, check_input_shape, upsample2


class Up(nnx.Module):
    """upsample x2, concat skip, 2 x (conv3x3, norm, ReLU): [b, h, w, cin] + [b, 2h, 2w, cskip] -> [b, 2h, 2w, cout]."""

    def __init__(self, cin: int, cskip: int, cout: int, *, norm: str, groups: int, **kw):
        self.conv1 = conv2d(cin + cskip, cout, 3, **kw)
        self.norm1 = make_norm(norm, cout, groups=groups, **kw)
        self.conv2 = conv2d(cout, cout, 3, **kw)
        self.norm2 = make_norm(norm, cout, groups=groups, **kw)

    def __call__(self, x: jax.Array, skip: jax.Array, train: bool) -> jax.Array:
        h = jnp.concatenate([upsample2(x), skip.astype(x.dtype)], -1)
        h = nnx.relu(apply_norm(self.norm1, self.conv1(h), train))
        return nnx.relu(apply_norm(self.norm2, self.conv2(h), train))


class Model(nnx.Module):
    """[batch, H, W, c] -> per-pixel logits float32 [batch, H, W, num_classes]; H, W multiples of 16."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        width: int = 16,
        norm: str = "group",
        groups: int = 8,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        check_input_shape("seg_unet", input_shape)
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.backbone = Backbone(input_shape[-1], width=width, norm=norm, groups=groups, **kw)
        self.stem = conv2d(input_shape[-1], width, 3, **kw)
        self.stem_norm = make_norm(norm, width, groups=groups, **kw)
        ch = self.backbone.channels  # strides 2, 4, 8, 16
        skips = (width, *ch[:-1])  # strides 1, 2, 4, 8
        ups, cin = [], ch[-1]
        for cskip in reversed(skips):
            ups.append(Up(cin, cskip, cskip, norm=norm, groups=groups, **kw))
            cin = cskip
        self.ups = nnx.List(ups)
        self.out = conv2d(cin, num_classes, 1, bias=True, **kw)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        del rngs  # no dropout
        full = nnx.relu(apply_norm(self.stem_norm, self.stem(x), train))
        feats = [full, *self.backbone(x, train)]
        h = feats[-1]
        for up, skip in zip(self.ups, reversed(feats[:-1]), strict=True):
            h = up(h, skip, train)
        return self.out(h).astype(jnp.float32)

    def segment(self, x: jax.Array) -> jax.Array:
        """int32 [batch, H, W]: the argmax class of every pixel."""
        return jnp.argmax(self(x, train=False), -1).astype(jnp.int32)
