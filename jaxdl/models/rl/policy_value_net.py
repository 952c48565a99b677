"""AlphaZero's policy-value network for board games (Silver et al. 2017, scaled down): a 3x3 convolutional stem,
`blocks` residual blocks (conv-LN-ReLU-conv-LN + skip, ReLU), a policy head (1x1 conv -> dense over the actions) and
a value head (1x1 conv -> dense -> ReLU -> dense -> tanh). Layer norm instead of batch norm keeps the network a pure
function of its parameters (self-play and training batches then need no running statistics)."""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.conv import conv2d
from jaxdl.layers.dense import dense


class Block(nnx.Module):
    def __init__(self, c: int, rngs: nnx.Rngs):
        self.conv1, self.conv2 = (
            conv2d(c, c, 3, bias=True, init="lecun", rngs=rngs),
            conv2d(c, c, 3, bias=True, init="lecun", rngs=rngs),
        )
        self.norm1, self.norm2 = nnx.LayerNorm(c, rngs=rngs), nnx.LayerNorm(c, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.norm1(self.conv1(x)))
        return jax.nn.relu(x + self.norm2(self.conv2(h)))


class Model(nnx.Module):
    """obs [batch, height, width, planes] (any dtype) -> (policy logits float32 [batch, num_classes], value float32
    [batch] in [-1, 1], the expected result for the player to move)."""

    POLICY_VALUE = True  # the AlphaZero task checks for this before building

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: int = 32,
        blocks: int = 2,
        value_hidden: int = 32,
        rngs: nnx.Rngs,
    ):
        if len(input_shape) != 3:
            raise ValueError(f"policy_value_net needs [height, width, planes] observations, got {input_shape}")
        hgt, wid, planes = input_shape
        kw = dict(dtype="float32", param_dtype="float32", rngs=rngs)
        self.stem = conv2d(planes, channels, 3, bias=True, init="lecun", rngs=rngs)
        self.stem_norm = nnx.LayerNorm(channels, rngs=rngs)
        self.blocks = nnx.List([Block(channels, rngs) for _ in range(blocks)])
        self.policy_conv, self.value_conv = (
            conv2d(channels, 2, 1, bias=True, init="lecun", rngs=rngs),
            conv2d(channels, 1, 1, bias=True, init="lecun", rngs=rngs),
        )
        self.policy = dense(hgt * wid * 2, num_classes, ("mlp", "vocab"), **kw)
        self.value1 = dense(hgt * wid, value_hidden, ("embed", "mlp"), **kw)
        self.value2 = dense(value_hidden, 1, ("mlp", "vocab"), **kw)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
        h = jax.nn.relu(self.stem_norm(self.stem(x.astype(jnp.float32))))
        for block in self.blocks:
            h = block(h)
        b = x.shape[0]
        logits = self.policy(jax.nn.relu(self.policy_conv(h)).reshape(b, -1))
        v = jax.nn.relu(self.value1(jax.nn.relu(self.value_conv(h)).reshape(b, -1)))
        return logits.astype(jnp.float32), jnp.tanh(self.value2(v)[:, 0]).astype(jnp.float32)
