"""`init="torch"` for the MNIST-1D paper's models: PyTorch's default initialization, which the paper's code uses.

PyTorch's defaults (torch.nn.Linear / Conv1d `reset_parameters`: kaiming_uniform with a=sqrt(5); torch.nn.GRU):
- Linear and Conv1d: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_features (Linear) or
  in_channels * kernel_size (Conv1d);
- GRU: every weight and bias ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).
`init="flax"` (the default) keeps the Flax initializers the models always had: LeCun-normal kernels, zero biases
(GRU: LeCun-normal input kernel, orthogonal recurrent kernel, zero biases).
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.dtypes import to_dtype

INITS = ("flax", "torch")


def check(init: str, model: str) -> None:
    if init not in INITS:
        raise ValueError(f"{model}: init={init!r} is not one of {INITS}")


def uniform(bound: float) -> nnx.Initializer:
    """U(-bound, bound), any shape."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def fan_in_bound(fan_in: int) -> float:
    return 1.0 / math.sqrt(fan_in)


def dense(din: int, dout: int, axes: tuple[str, str], *, dtype: str, param_dtype: str, rngs: nnx.Rngs) -> nnx.Linear:
    """`jaxdl.layers.dense.dense` with torch.nn.Linear's initialization: kernel [din, dout] and bias [dout] ~
    U(-1/sqrt(din), 1/sqrt(din)); the kernel carries the logical axis names `axes`."""
    bound = fan_in_bound(din)
    return nnx.Linear(
        din,
        dout,
        dtype=to_dtype(dtype),
        param_dtype=to_dtype(param_dtype),
        kernel_init=nnx.with_partitioning(uniform(bound), axes),
        bias_init=uniform(bound),
        rngs=rngs,
    )
