"""1-D CNN of the MNIST-1D paper (Greydanus 2020): three strided convs of 25 channels, then a linear head.

[batch, 40] -> conv(k5,s2,p1) -> 19 -> conv(k3,s2,p1) -> 10 -> conv(k3,s2,p1) -> 5 -> flatten 125 -> logits.
"""

import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.dense import dense
from jaxdl.layers.dtypes import to_dtype
from jaxdl.layers.norm import apply_norm, check_norm, make_norm
from jaxdl.layers.remat import remat as remat_fn
from jaxdl.models.basic import _torch_init


class Model(nnx.Module):
    """[batch, length] or [batch, length, channels] -> logits [batch, num_classes] (float32)."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: int = 25,
        kernel_sizes: tuple[int, ...] = (5, 3, 3),
        stride: int = 2,
        padding: int = 1,
        norm: str = "none",
        dropout: float = 0.0,
        dtype: str = "float32",
        param_dtype: str = "float32",
        remat: str = "none",
        init: str = "flax",
        rngs: nnx.Rngs,
    ):
        """norm (batch | group | layer | none) after each conv; dropout before the head. init: "flax" (LeCun-normal
        kernels, zero biases) or "torch" (torch.nn.Conv1d / Linear: weights and biases ~ U(+-1/sqrt(fan_in)),
        fan_in = in_channels * kernel_size for a conv)."""
        check_norm(norm)
        _torch_init.check(init, "cnn1d")
        length, cin = (input_shape[0], 1) if len(input_shape) == 1 else input_shape
        self.convs = nnx.List()
        self.norms = nnx.List()
        for k in kernel_sizes:
            if init == "torch":
                bound = _torch_init.fan_in_bound(cin * k)
                inits = dict(kernel_init=_torch_init.uniform(bound), bias_init=_torch_init.uniform(bound))
            else:
                inits = dict(kernel_init=nnx.initializers.lecun_normal())
            self.convs.append(
                nnx.Conv(
                    cin,
                    channels,
                    kernel_size=(k,),
                    strides=(stride,),
                    padding=((padding, padding),),
                    dtype=to_dtype(dtype),
                    param_dtype=to_dtype(param_dtype),
                    kernel_init=nnx.with_partitioning(inits.pop("kernel_init"), (None, "embed", "mlp")),
                    **inits,
                    rngs=rngs,
                )
            )
            self.norms.append(make_norm(norm, channels, groups=5, dtype=dtype, param_dtype=param_dtype, rngs=rngs))
            length = (length + 2 * padding - k) // stride + 1
            cin = channels
        if length < 1:
            raise ValueError(f"cnn1d: input length {input_shape[0]} is too short for kernels {kernel_sizes}")
        self.head = (_torch_init.dense if init == "torch" else dense)(
            length * channels, num_classes, ("mlp", "vocab"), dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )
        self.dropout = nnx.Dropout(dropout)
        self.remat = remat

    def __call__(self, x: jnp.ndarray, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jnp.ndarray:
        h = x[..., None] if x.ndim == 2 else x
        layer = remat_fn(lambda conv, norm, h: nnx.relu(apply_norm(norm, conv(h), train)), self.remat)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = layer(conv, norm, h)
        h = self.dropout(h.reshape(h.shape[0], -1), deterministic=not train, rngs=rngs)
        return self.head(h).astype(jnp.float32)
