"""LeNet-5 (LeCun et al. 1998) for 28x28 images, with max pooling and ReLU (or tanh) activations.

[b,28,28,c] -> conv5x5 6 (same) -> pool -> [b,14,14,6] -> conv5x5 16 (valid) -> pool -> [b,5,5,16]
-> 120 -> 84 -> logits.

`activation="tanh"`: the tempered sigmoid 2·σ(2x) − 1 that Papernot et al. 2021 found best for DP-SGD (bounded
activations keep the per-example gradient norms, and so the clipping bias, small).
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.dense import dense
from jaxdl.layers.dtypes import to_dtype
from jaxdl.layers.pool import max_pool
from jaxdl.layers.remat import remat as remat_fn

ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh}


class Model(nnx.Module):
    """[batch, height, width, channels] -> logits [batch, num_classes] (float32)."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        dropout: float = 0.0,
        activation: str = "relu",
        dtype: str = "float32",
        param_dtype: str = "float32",
        remat: str = "none",
        rngs: nnx.Rngs,
    ):
        if len(input_shape) != 3:
            raise ValueError(f"lenet expects [height, width, channels] inputs, got input_shape={input_shape}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"config.model.activation={activation!r}: choose one of {tuple(ACTIVATIONS)}")
        h, w, c = input_shape
        kw = dict(dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
        init = nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, None, "embed", "mlp"))
        self.conv1 = nnx.Conv(c, 6, kernel_size=(5, 5), padding="SAME", kernel_init=init, **kw)
        self.conv2 = nnx.Conv(6, 16, kernel_size=(5, 5), padding="VALID", kernel_init=init, **kw)
        flat = 16 * math.prod(((h // 2 - 4) // 2, (w // 2 - 4) // 2))
        dkw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.fc1 = dense(flat, 120, ("embed", "mlp"), **dkw)
        self.fc2 = dense(120, 84, ("mlp", "embed"), **dkw)
        self.head = dense(84, num_classes, ("embed", "vocab"), **dkw)
        self.dropout = nnx.Dropout(dropout)
        self.remat, self.activation = remat, activation

    def __call__(self, x: jnp.ndarray, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jnp.ndarray:
        act = ACTIVATIONS[self.activation]
        pool = lambda h: max_pool(h, (2, 2))
        conv = remat_fn(lambda layer, h: pool(act(layer(h))), self.remat)
        h = conv(self.conv2, conv(self.conv1, x))
        h = h.reshape(h.shape[0], -1)
        h = self.dropout(act(self.fc1(h)), deterministic=not train, rngs=rngs)
        h = self.dropout(act(self.fc2(h)), deterministic=not train, rngs=rngs)
        return self.head(h).astype(jnp.float32)
