"""Bidirectional GRU of the MNIST-1D paper: hidden 6 per direction, all time steps flattened into the head.

`hidden_bias=True, init="torch"` is torch.nn.GRU + torch.nn.Linear as in the paper's code (GRUBase, 5,134
parameters): the cell gets torch's hidden-side biases b_hr, b_hz, b_hn (b_hn sits inside the reset gate,
n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), so it is not redundant; nnx.GRUCell has no hidden bias), and every
parameter starts as in PyTorch (`jaxdl.models.basic._torch_init`).
"""

import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.dense import dense
from jaxdl.layers.dtypes import to_dtype
from jaxdl.models.basic import _torch_init


class HiddenBiasGRUCell(nnx.GRUCell):
    """nnx.GRUCell whose hidden-state transform has a bias [3 * hidden] (r, z, n): torch.nn.GRU's cell,
    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), z = sigmoid(W_iz x + b_iz + W_hz h + b_hz),
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h."""

    def __init__(self, in_features: int, hidden_features: int, *, recurrent_kernel_init, bias_init, **kw):
        super().__init__(
            in_features, hidden_features, recurrent_kernel_init=recurrent_kernel_init, bias_init=bias_init, **kw
        )
        self.dense_h = nnx.Linear(  # nnx.GRUCell.__call__ splits dense_h(h) into the r, z, n parts
            hidden_features,
            3 * hidden_features,
            use_bias=True,
            kernel_init=recurrent_kernel_init,
            bias_init=bias_init,
            dtype=kw.get("dtype"),
            param_dtype=kw.get("param_dtype", jnp.float32),
            rngs=kw["rngs"],
        )


class Model(nnx.Module):
    """[batch, time] or [batch, time, features] -> logits [batch, num_classes] (float32)."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        hidden: int = 6,
        bidirectional: bool = True,
        hidden_bias: bool = False,
        init: str = "flax",
        dtype: str = "float32",
        param_dtype: str = "float32",
        remat: str = "none",
        rngs: nnx.Rngs,
    ):
        """hidden_bias: torch.nn.GRU's cell (biases on the hidden-state transform too). init: "flax" (LeCun-normal
        input kernels, orthogonal recurrent kernels, zero biases, LeCun-normal head) or "torch" (every GRU
        parameter ~ U(+-1/sqrt(hidden)), the head ~ U(+-1/sqrt(fan_in)))."""
        del remat  # the scan over time is the only block; nothing to gain at these sizes
        _torch_init.check(init, "gru")
        time, feat = (input_shape[0], 1) if len(input_shape) == 1 else input_shape
        kw = dict(dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
        if init == "torch":
            u = _torch_init.uniform(_torch_init.fan_in_bound(hidden))
            kw |= dict(kernel_init=u, recurrent_kernel_init=u, bias_init=u)
        if hidden_bias:
            kw.setdefault("recurrent_kernel_init", nnx.initializers.orthogonal())
            kw.setdefault("bias_init", nnx.initializers.zeros_init())
        cell = HiddenBiasGRUCell if hidden_bias else nnx.GRUCell
        self.forward = nnx.RNN(cell(feat, hidden, **kw))
        self.backward = nnx.RNN(cell(feat, hidden, **kw)) if bidirectional else None
        self.hidden, self.carry_dtype = hidden, to_dtype(param_dtype)
        width = hidden * (2 if bidirectional else 1)
        make = _torch_init.dense if init == "torch" else dense
        self.head = make(time * width, num_classes, ("mlp", "vocab"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jnp.ndarray, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jnp.ndarray:
        x = x[..., None] if x.ndim == 2 else x
        # An explicit zero carry: letting nnx.RNN draw it from its stored Rngs fails under jit (trace-level error).
        zeros = jnp.zeros((x.shape[0], self.hidden), self.carry_dtype)
        h = self.forward(x, initial_carry=zeros)
        if self.backward is not None:
            h = jnp.concatenate([h, self.backward(x, initial_carry=zeros, reverse=True, keep_order=True)], -1)
        return self.head(h.reshape(h.shape[0], -1)).astype(jnp.float32)
