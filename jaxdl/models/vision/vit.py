"""Vision Transformer (Dosovitskiy et al. 2021): non-overlapping p x p patches, each flattened and linearly
embedded (the same as a stride-p convolution), learned position embeddings, a class token or global average
pooling, then the scanned pre-norm encoder of `jaxdl.models.transformer` (shared attention layer, so
`attention_impl` picks the kernel, and every sharding strategy applies).

ViT-tiny here means the small-image setting: dim 192, depth 12 heads 3 is DeiT-Ti; for 28x28 inputs the studies
use patch 4 (49 tokens), dim 64-192, depth 4-6.
"""

import jax

from jaxdl.models import transformer


def patchify(x: jax.Array, patch: int) -> jax.Array:
    """[b, h, w, c] -> [b, (h/p)(w/p), p*p*c], row-major over patches."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // patch) * (w // patch), patch * patch * c)


class Model(transformer.Model):
    """[batch, height, width, channels] -> logits [batch, num_classes] (float32)."""

    def __init__(self, *, input_shape: tuple[int, ...], patch: int = 4, pool: str = "cls", **kwargs):
        """patch must divide height and width; other arguments are those of jaxdl.models.transformer.Model."""
        if len(input_shape) != 3:
            raise ValueError(f"vit expects [height, width, channels] inputs, got input_shape={input_shape}")
        h, w, c = input_shape
        if patch < 1 or h % patch or w % patch:
            raise ValueError(f"config.model.patch={patch} must divide the image size {h}x{w}")
        self.patch = patch
        super().__init__(input_shape=((h // patch) * (w // patch), patch * patch * c), pool=pool, **kwargs)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None, return_attention: bool = False):
        """-> logits; with `return_attention` (logits, attention [depth, batch, heads, tokens, tokens]): tokens are
        the class token (pool="cls") then the patches in row-major order (see `patchify`)."""
        return super().__call__(patchify(x, self.patch), train=train, rngs=rngs, return_attention=return_attention)
