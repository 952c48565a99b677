"""Actor-critic MLP for PPO on vector observations: separate policy and value towers (CleanRL / PureJaxRL's
CartPole agent: two hidden layers of 64, tanh, orthogonal init with gain sqrt(2), 0.01 on the policy head and 1 on
the value head). The orthogonal init is why this builds its own `nnx.Linear`s instead of `layers.dense`
(LeCun-normal); the kernels carry the same logical axes."""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.dtypes import to_dtype

ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def _linear(din: int, dout: int, gain: float, axes: tuple[str, str], rngs: nnx.Rngs, param_dtype: str) -> nnx.Linear:
    return nnx.Linear(
        din,
        dout,
        kernel_init=nnx.with_partitioning(nnx.initializers.orthogonal(gain), axes),
        param_dtype=to_dtype(param_dtype),
        rngs=rngs,
    )


class Tower(nnx.Module):
    def __init__(self, din: int, hidden: tuple[int, ...], dout: int, head_gain: float, *, param_dtype, rngs):
        sizes = (din, *hidden)
        self.layers = nnx.List(
            [
                _linear(a, b, math.sqrt(2), ("embed", "mlp"), rngs, param_dtype)
                for a, b in zip(sizes[:-1], sizes[1:], strict=True)
            ]
        )
        self.head = _linear(sizes[-1], dout, head_gain, ("mlp", "vocab"), rngs, param_dtype)

    def __call__(self, x, act):
        for layer in self.layers:
            x = act(layer(x))
        return self.head(x)


class Model(nnx.Module):
    """obs [batch, *input_shape] -> (policy logits float32 [batch, num_classes], value float32 [batch]);
    `num_classes` is the number of discrete actions (the task passes the environment's)."""

    ACTOR_CRITIC = True  # the PPO task checks for this before building

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        hidden: tuple[int, ...] = (64, 64),
        activation: str = "tanh",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        if activation not in ACTIVATIONS:
            raise ValueError(f"config.model.activation={activation!r} is not one of {sorted(ACTIVATIONS)}")
        din = math.prod(input_shape)
        self.activation = activation
        self.actor = Tower(din, tuple(hidden), num_classes, 0.01, param_dtype=param_dtype, rngs=rngs)
        self.critic = Tower(din, tuple(hidden), 1, 1.0, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
        h = x.reshape(x.shape[0], -1).astype(jnp.float32)
        act = ACTIVATIONS[self.activation]
        return self.actor(h, act).astype(jnp.float32), self.critic(h, act)[:, 0].astype(jnp.float32)
