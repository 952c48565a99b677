"""VGG-style plain CNN (Simonyan & Zisserman 2015) sized for small images, for the normalization/dropout
ablations: stages of `convs` conv3x3-norm-relu layers then a 2x2 max pool, widths doubling per stage, then
flatten -> dense `hidden` -> relu -> dropout -> logits. `norm` is batch, group, layer or none.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.dense import dense
from jaxdl.layers.dtypes import to_dtype
from jaxdl.layers.norm import apply_norm, check_norm, make_norm
from jaxdl.layers.pool import max_pool


class Model(nnx.Module):
    """[batch, height, width, channels] -> logits [batch, num_classes] (float32)."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        widths: tuple[int, ...] = (32, 64, 128),
        convs: int = 2,
        hidden: int = 256,
        norm: str = "batch",
        groups: int = 8,
        dropout: float = 0.0,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        if len(input_shape) != 3:
            raise ValueError(f"vgg expects [height, width, channels] inputs, got input_shape={input_shape}")
        check_norm(norm)
        h, w, cin = input_shape
        if min(h, w) < 2 ** len(widths):
            raise ValueError(f"vgg: {len(widths)} pooling stages (config.model.widths) are too many for {h}x{w}")
        init = nnx.with_partitioning(nnx.initializers.kaiming_normal(), (None, None, "embed", "mlp"))
        ckw = dict(dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
        layers = []
        for width in widths:
            for _ in range(convs):
                conv = nnx.Conv(cin, width, kernel_size=(3, 3), padding="SAME", kernel_init=init, **ckw)
                layers.append(
                    (conv, make_norm(norm, width, groups=groups, dtype=dtype, param_dtype=param_dtype, rngs=rngs))
                )
                cin = width
            h, w = h // 2, w // 2
        self.convs = nnx.List([c for c, _ in layers])
        self.norms = nnx.List([n for _, n in layers])
        self.per_stage = convs
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.fc = dense(cin * math.prod((h, w)), hidden, ("embed", "mlp"), **kw)
        self.head = dense(hidden, num_classes, ("mlp", "vocab"), **kw)
        self.dropout = nnx.Dropout(dropout)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = nnx.relu(apply_norm(norm, conv(x), train))
            if (i + 1) % self.per_stage == 0:
                x = max_pool(x, (2, 2))
        x = nnx.relu(self.fc(x.reshape(x.shape[0], -1)))
        x = self.dropout(x, deterministic=not train, rngs=rngs)
        return self.head(x).astype(jnp.float32)
