"""A multi-exit CNN (BranchyNet, Teerapittayanon et al. 2016; "anytime" networks): a stack of conv blocks with a
classifier head after every block, so inference can stop at the first head that is confident enough.

[b, h, w, c] -> block k: conv3x3 (channels[k], SAME, bias) -> ReLU -> max-pool 2x2 (stride 2, floor) -> h_k
exit k: flatten(h_k) -> dense -> logits_k [b, num_classes] (float32).

* `model(x)`: the last exit's logits (what `classify` evaluators, `jaxdl.evaluate` and `jaxdl.export` see);
* `model.exits(x)`: every exit's logits, a tuple of `[b, num_classes]`, shallow to deep (the `multi_exit` task
  trains them all with a weighted sum of cross-entropies);
* `model.stage(k, h)` -> (h_k, logits_k): block k and its head alone, for inference that stops early
  (`jaxdl.serve.cascade.EarlyExit`);
* `exit_flops(input_shape, num_classes, channels)`: the analytic FLOP count (2 per multiply-add of the convs and
  dense heads; biases, ReLU and pooling are not counted) of answering at each exit in early-exit inference
  (blocks 0..k and heads 0..k); `exit_flops(..., earlier_heads=False)`: blocks 0..k and head k only (k = last:
  the plain forward pass `model(x)`).

The heads read the whole flattened feature map (not a global average): the early maps are where the spatial
detail is, and a pooled 8-channel vector is too weak a classifier to be worth exiting at.
"""

from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.conv import conv2d
from jaxdl.layers.dense import dense


def feature_shapes(input_shape: Sequence[int], channels: Sequence[int]) -> list[tuple[int, int, int]]:
    """[h, w, c] of each block's output: SAME conv keeps h, w; the 2x2 pool floors them by 2."""
    h, w, _ = input_shape
    out = []
    for c in channels:
        h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"multi_exit: input {tuple(input_shape)} is too small for {len(channels)} pooled blocks")
        out.append((h, w, c))
    return out


def exit_flops(
    input_shape: Sequence[int], num_classes: int, channels: Sequence[int], *, earlier_heads: bool = True
) -> list[int]:
    """FLOPs per example of answering at exit k, counting 2 per multiply-add: conv k is 2·H·W·9·C_in·C_k at the
    pre-pool resolution, head k 2·(h_k·w_k·C_k)·classes; blocks 0..k plus heads 0..k (`earlier_heads`) or head k."""
    h, w, cin = input_shape
    flops, blocks, heads = [], 0, 0
    for (hk, wk, ck), c_in in zip(feature_shapes(input_shape, channels), (cin, *channels[:-1]), strict=True):
        blocks += 2 * h * w * 9 * c_in * ck
        head = 2 * hk * wk * ck * num_classes
        heads = heads + head if earlier_heads else head
        flops.append(blocks + heads)
        h, w = hk, wk
    return flops


class Model(nnx.Module):
    """[batch, height, width, channels] -> logits [batch, num_classes] of the last exit (float32)."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: tuple[int, ...] = (8, 16, 32),
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        if len(input_shape) != 3:
            raise ValueError(f"multi_exit expects [height, width, channels] inputs, got input_shape={input_shape}")
        if not channels or any(c < 1 for c in channels):
            raise ValueError(f"config.model.channels={channels}: need one or more positive channel counts")
        shapes = feature_shapes(input_shape, channels)
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        cins = (input_shape[-1], *channels[:-1])
        self.blocks = nnx.List([conv2d(ci, co, 3, bias=True, **kw) for ci, co in zip(cins, channels, strict=True)])
        self.heads = nnx.List([dense(h * w * c, num_classes, ("embed", "vocab"), **kw) for h, w, c in shapes])
        self.num_exits = len(channels)

    def stage(self, k: int, h: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Block k on the previous block's output (the input for k = 0), and exit k's logits."""
        h = nnx.max_pool(nnx.relu(self.blocks[k](h)), (2, 2), strides=(2, 2))
        return h, self.heads[k](h.reshape(h.shape[0], -1)).astype(jnp.float32)

    def exits(self, x: jnp.ndarray, *, train: bool = False, rngs: nnx.Rngs | None = None) -> tuple[jnp.ndarray, ...]:
        del train, rngs  # no dropout / BatchNorm: the same function in training and inference
        out = []
        for k in range(self.num_exits):
            x, logits = self.stage(k, x)
            out.append(logits)
        return tuple(out)

    def __call__(self, x: jnp.ndarray, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jnp.ndarray:
        del train, rngs
        for block in self.blocks:
            x = nnx.max_pool(nnx.relu(block(x)), (2, 2), strides=(2, 2))
        return self.heads[-1](x.reshape(x.shape[0], -1)).astype(jnp.float32)
