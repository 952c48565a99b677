"""Quantized dense layer: fp32 master weights for training, fake quantization for QAT, int8/int4 for inference.

`QuantDense(in_features, out_features, mode=..., qat=..., ...)` is a drop-in for `nnx.Linear` (same `kernel
[in, out]` / `bias [out]` parameters, so checkpoints interchange). Modes (`config.quant.mode`):

| mode    | weights                                   | activations                                  | matmul (inference) |
|---------|-------------------------------------------|----------------------------------------------|--------------------|
| `none`  | float                                     | float                                        | plain `x @ w`      |
| `w8a8`  | int8, one scale per output column         | int8, one scale per row (token), dynamic;    | `api.w8a8_matmul`  |
|         |                                           | or one static per-tensor scale (calibrated)  |                    |
| `w8a16` | int8, one scale per output column         | float (bf16/fp16/fp32)                       | `api.w8a16_matmul` |
| `w4a16` | int4, one scale per `group_size` rows of K | float                                       | `api.w4a16_matmul` |

All quantization is symmetric abs-max (no zero points), exactly the conventions of
`kernels.int8_matmul.reference`: int8 values in [-127, 127], int4 in [-7, 7], an all-zero row/column gets scale 1.

Three forms of one layer:

* **training, `qat=False`** (default): a float layer. `mode` only names the deployment target (post-training
  quantization, `jaxdl.compress.quantize`, converts it later).
* **training, `qat=True`**: the forward pass fake-quantizes (quantize → dequantize in float32) the kernel (per
  column, or int4 group-wise) and, for `w8a8`, the activations (per token, or with the static scale once
  calibrated), so the loss sees the rounding error the deployed model will have. Gradients use the
  straight-through estimator (`fake_quant`): d fake_quant(x) / dx = 1 where x lies inside the representable range
  [-qmax * scale, qmax * scale] and 0 outside it (the "clipped" STE). Abs-max scales put every value inside the
  range, so weights and dynamic per-token activations get the identity gradient; only a static activation scale
  smaller than the data's abs-max (percentile calibration) clips, and the clipped entries get zero gradient.
  Scales are computed from `stop_gradient` values: no gradient flows into a scale (no learned step size).
* **inference** (`layer.quantize()`, or `jaxdl.compress.quantize.quantize_model`): the float kernel is replaced by
  `kernel_q` (int8 `[K, N]`, or packed int4 uint8 `[K // 2, N]`) and `kernel_scale` (float32 `[1, N]`, or
  `[K // group, N]`), held as `Quantized` variables (not `nnx.Param`: optimizers never see them), and the
  forward pass calls `kernels.int8_matmul.api` with `impl` (`config.quant.impl`). A static w8a8 activation
  scale (`act_scale`, float32 scalar) quantizes activations per tensor and runs the int8 x int8 -> int32
  reference matmul (the api's fused kernels quantize activations per token themselves).

Models opt in through config: `make_dense(config.quant)` is a factory with the signature of
`jaxdl.layers.dense.dense`, and `apply_quant(model, config.quant)` swaps every 2-D `nnx.Linear` of an already
built model for a `QuantDense` that shares its parameters. `check_config` validates `config.quant`
(`mode`, `impl`, `qat`, `group_size`) and names the bad key.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from jaxdl.layers.dense import dense as float_dense
from jaxdl.layers.dtypes import to_dtype
from kernels.int8_matmul import api as qapi
from kernels.int8_matmul import reference as qref

MODES = ("none", "w8a8", "w8a16", "w4a16")
IMPLS = qapi.IMPLS
DEFAULTS = {"mode": "none", "impl": "auto", "qat": False, "group_size": 128}
INT8_MAX, INT4_MAX = 127, 7
Axes = tuple[str | None, str | None]
DEFAULT_KERNEL_INIT = nnx.initializers.lecun_normal()


class Quantized(nnx.Variable):
    """Non-trainable quantized tensors of an inference-form layer: int8 / packed-int4 weights, float32 scales."""


class CalibrationStats(nnx.Variable):
    """Activation statistics a layer collects while calibrating (abs-max, |x| histogram); not part of a model."""


# ---------------------------------------------------------------------------------------------------------- config


def _dtype(d):
    if d is None or not isinstance(d, str):
        return d
    return to_dtype(d)


def check_config(quant: Mapping[str, Any] | None, prefix: str = "config.quant") -> dict[str, Any]:
    """`quant` with defaults filled in; raises naming `config.quant.<key>` on an unknown key or a bad value."""
    quant = dict(quant or {})
    if unknown := sorted(set(quant) - set(DEFAULTS)):
        raise ValueError(f"{prefix}.{unknown[0]} is not a quantization option; known: {sorted(DEFAULTS)}")
    q = {**DEFAULTS, **quant}
    if q["mode"] not in MODES:
        raise ValueError(f"{prefix}.mode={q['mode']!r} is not one of {MODES}")
    if q["impl"] not in IMPLS:
        raise ValueError(f"{prefix}.impl={q['impl']!r} is not one of {IMPLS}")
    if not isinstance(q["qat"], bool):
        raise TypeError(f"{prefix}.qat must be a bool, got {q['qat']!r}")
    g = q["group_size"]
    if isinstance(g, bool) or not isinstance(g, int) or g < 2 or g % 2:
        raise ValueError(f"{prefix}.group_size={g!r} must be a positive even int (int4 packs two values per byte)")
    if q["qat"] and q["mode"] == "none":
        raise ValueError(f"{prefix}.qat=True needs {prefix}.mode in {MODES[1:]} (mode is 'none')")
    return q


def effective_group_size(in_features: int, group_size: int, prefix: str = "config.quant") -> int:
    """The int4 group along K for a layer with `in_features` inputs: `group_size`, or K itself when
    `group_size >= K` (one group per column). Raises naming `config.quant.group_size` if it does not divide K."""
    if in_features % 2:
        raise ValueError(
            f"{prefix}.mode='w4a16' packs two int4 values per byte along in_features, which is odd ({in_features})"
        )
    g = min(group_size, in_features)
    if g < 2 or g % 2 or in_features % g:
        raise ValueError(
            f"{prefix}.group_size={group_size} does not divide in_features={in_features} of a w4a16 dense layer "
            "(use an even divisor of every dense layer's input size, or a value >= it for one group per column)"
        )
    return g


# ------------------------------------------------------------------------------------------------ fake quantization


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def fake_quant(x: jax.Array, scale: jax.Array, qmax: int) -> jax.Array:
    """`clip(round(x / scale), -qmax, qmax) * scale` in float32 (`scale` broadcasts against `x`).

    Gradient (straight-through estimator): `g` where `|x / scale| < qmax + 0.5` (the clip is inactive), 0 where x
    was clipped; no gradient for `scale`."""
    x32 = x.astype(jnp.float32)
    return (jnp.clip(jnp.round(x32 / scale), -qmax, qmax) * scale).astype(x.dtype)


def _fake_quant_fwd(x, scale, qmax):
    inside = jnp.abs(x.astype(jnp.float32) / scale) < qmax + 0.5  # exactly where the clip is inactive
    return fake_quant(x, scale, qmax), (inside, scale)


def _fake_quant_bwd(qmax, res, g):
    inside, scale = res
    return jnp.where(inside, g, jnp.zeros_like(g)), jnp.zeros_like(scale)


fake_quant.defvjp(_fake_quant_fwd, _fake_quant_bwd)


def absmax_scale(a: jax.Array, axis, qmax: int) -> jax.Array:
    """float32 abs-max / qmax over `axis` (keepdims), 1 where everything is zero; no gradient."""
    amax = jnp.max(jnp.abs(lax.stop_gradient(a).astype(jnp.float32)), axis=axis, keepdims=True)
    return jnp.where(amax > 0, amax / qmax, jnp.float32(1.0))


def fake_quant_per_token(x: jax.Array) -> jax.Array:
    """`x [..., K]` fake-quantized to int8 with one abs-max scale per row (= `reference.quantize_per_token`)."""
    return fake_quant(x, absmax_scale(x, -1, INT8_MAX), INT8_MAX)


def fake_quant_per_tensor(x: jax.Array, scale: jax.Array) -> jax.Array:
    """`x` fake-quantized to int8 with one static float32 `scale` (values beyond 127 * scale clip)."""
    return fake_quant(x, jnp.asarray(scale, jnp.float32), INT8_MAX)


def fake_quant_per_channel(w: jax.Array) -> jax.Array:
    """`w [K, N]` fake-quantized to int8 with one abs-max scale per column (= `reference.quantize_per_channel`)."""
    return fake_quant(w, absmax_scale(w, 0, INT8_MAX), INT8_MAX)


def fake_quant_int4(w: jax.Array, group_size: int) -> jax.Array:
    """`w [K, N]` fake-quantized to int4 with one scale per `group_size` rows of each column
    (= `reference.quantize_int4` then `dequantize_int4`)."""
    k, n = w.shape
    wg = w.reshape(k // group_size, group_size, n)
    return fake_quant(wg, absmax_scale(wg, 1, INT4_MAX), INT4_MAX).reshape(k, n)


def fake_quant_weight(w: jax.Array, mode: str, group_size: int) -> jax.Array:
    """The kernel `w [K, N]` as the deployed `mode` sees it (float32 dequantized values, STE gradient)."""
    if mode in ("w8a8", "w8a16"):
        return fake_quant_per_channel(w)
    if mode == "w4a16":
        return fake_quant_int4(w, effective_group_size(w.shape[0], group_size))
    return w


def quantize_kernel(kernel: jax.Array, mode: str, group_size: int = 128) -> dict[str, jax.Array]:
    """`kernel [K, N]` float -> {"kernel_q": int8 [K, N] | uint8 [K // 2, N], "kernel_scale": float32 [1, N] |
    [K // group, N]} with the kernels' own quantizers (so the packing is the one the kernels unpack)."""
    if mode in ("w8a8", "w8a16"):
        q, s = qref.quantize_per_channel(kernel)
    elif mode == "w4a16":
        q, s = qref.quantize_int4(kernel, effective_group_size(kernel.shape[0], group_size))
    else:
        raise ValueError(f"config.quant.mode={mode!r} has no quantized weights; use one of {MODES[1:]}")
    return {"kernel_q": q, "kernel_scale": s}


def dequantize_kernel(kernel_q: jax.Array, kernel_scale: jax.Array, mode: str, group_size: int = 128) -> jax.Array:
    """Inverse of `quantize_kernel` up to rounding: float32 `[K, N]`."""
    if mode == "w4a16":
        k = kernel_q.shape[0] * 2
        return qref.dequantize_int4(kernel_q, kernel_scale, k // kernel_scale.shape[0])
    return qref.dequantize_per_channel(kernel_q, kernel_scale)


# ------------------------------------------------------------------------------------------------------------ layer


class QuantDense(nnx.Module):
    """`x [..., in_features]` -> `[..., out_features]` in `dtype` (see the module docstring for the forms).

    `axes`: logical axis names of the kernel `[in, out]` (the bias gets `(axes[1],)`, the int weights the
    kernel's, the per-column scales `(None, axes[1])`). `group_size` applies to `w4a16` (a value >= in_features
    means one group per column).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        mode: str = "none",
        impl: str = "auto",
        qat: bool = False,
        group_size: int = 128,
        use_bias: bool = True,
        axes: Axes = (None, None),
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        kernel_init: Callable = DEFAULT_KERNEL_INIT,
        bias_init: Callable = nnx.initializers.zeros,
        rngs: nnx.Rngs | None,
    ):
        q = check_config(dict(mode=mode, impl=impl, qat=qat, group_size=group_size))
        if mode == "w4a16":
            effective_group_size(in_features, group_size)
        self.in_features, self.out_features = in_features, out_features
        self.mode, self.impl, self.qat, self.group_size = q["mode"], q["impl"], q["qat"], q["group_size"]
        self.use_bias, self.axes = use_bias, tuple(axes)
        self.dtype, self.param_dtype = _dtype(dtype), _dtype(param_dtype)
        self.kernel: nnx.Param | None = nnx.data(None)  # data attributes: they hold Variables or None
        self.bias: nnx.Param | None = nnx.data(None)
        if rngs is not None:  # rngs=None: the caller assigns kernel/bias (from_linear)
            init = nnx.with_partitioning(kernel_init, self.axes)
            self.kernel = nnx.Param(init(rngs.params(), (in_features, out_features), self.param_dtype))
            if use_bias:
                binit = nnx.with_partitioning(bias_init, (self.axes[1],))
                self.bias = nnx.Param(binit(rngs.params(), (out_features,), self.param_dtype))
        self.kernel_q: Quantized | None = nnx.data(None)
        self.kernel_scale: Quantized | None = nnx.data(None)
        self.act_scale: Quantized | None = nnx.data(None)  # static per-tensor w8a8 activation scale (calibration)
        self.calibrating: str | None = None  # "absmax" | "hist" while jaxdl.compress.quantize.calibrate runs
        self.act_absmax: CalibrationStats | None = nnx.data(None)
        self.act_hist: CalibrationStats | None = nnx.data(None)

    @classmethod
    def from_linear(cls, linear: nnx.Linear, **quant: Any) -> QuantDense:
        """A QuantDense sharing `linear`'s kernel and bias Variables (and their logical axes)."""
        axes = linear.kernel.get_metadata().get("out_sharding") or (None, None)
        layer = cls(
            linear.in_features,
            linear.out_features,
            use_bias=linear.use_bias,
            axes=tuple(axes),
            dtype=linear.dtype,
            param_dtype=linear.param_dtype,
            rngs=None,
            **quant,
        )
        layer.kernel, layer.bias = linear.kernel, linear.bias if linear.use_bias else None
        return layer

    # ---------------------------------------------------------------------------------------------- inference form
    @property
    def quantized(self) -> bool:
        return self.kernel_q is not None

    def _var(self, value, axes) -> Quantized:
        return Quantized(value, out_sharding=tuple(axes), eager_sharding=False)

    def quantize(self) -> QuantDense:
        """Converts this layer in place to the inference form: `kernel_q` + `kernel_scale` replace `kernel`."""
        if self.mode == "none":
            raise ValueError("config.quant.mode='none': there is nothing to quantize (choose w8a8, w8a16 or w4a16)")
        if self.quantized:
            return self
        qs = quantize_kernel(self.kernel[...], self.mode, self.group_size)
        self.kernel_q = self._var(qs["kernel_q"], self.axes)
        self.kernel_scale = self._var(qs["kernel_scale"], (None, self.axes[1]))
        self.kernel = None
        return self

    def set_act_scale(self, scale: float | jax.Array | None) -> None:
        """Sets (or with None removes) the static per-tensor activation scale of a w8a8 layer."""
        if scale is None:
            self.act_scale = None
            return
        if self.mode != "w8a8":
            raise ValueError(f"a static activation scale needs config.quant.mode='w8a8' (this layer is {self.mode!r})")
        self.act_scale = self._var(jnp.asarray(scale, jnp.float32).reshape(()), ())

    def float_kernel(self) -> jax.Array:
        """The kernel as float32 `[K, N]` (dequantized in the inference form)."""
        if self.quantized:
            return dequantize_kernel(self.kernel_q[...], self.kernel_scale[...], self.mode, self.group_size)
        return self.kernel[...].astype(jnp.float32)

    # ------------------------------------------------------------------------------------------------- calibration
    def observe(self, x: jax.Array) -> None:
        """Accumulates activation statistics of the inputs `x` (called from `__call__` while calibrating)."""
        ax = jnp.abs(x.astype(jnp.float32))
        if self.calibrating == "absmax":
            self.act_absmax[...] = jnp.maximum(self.act_absmax[...], jnp.max(ax))
        elif self.calibrating == "hist":
            bins = self.act_hist.shape[0]
            top = self.act_absmax[...]
            idx = jnp.clip(jnp.floor(ax / jnp.maximum(top, 1e-30) * bins), 0, bins - 1).astype(jnp.int32)
            self.act_hist[...] = self.act_hist[...] + jnp.bincount(idx.ravel(), length=bins).astype(jnp.float32)

    # ----------------------------------------------------------------------------------------------------- forward
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.calibrating is not None:
            self.observe(x)
        dtype = self.dtype or jnp.result_type(x.dtype, self.param_dtype)
        if self.quantized:
            y = self._quantized_matmul(x, dtype)
        elif self.qat and self.mode != "none":
            y = self._fake_quant_matmul(x, dtype)
        else:
            y = _matmul(x.astype(dtype), self.kernel[...].astype(dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(dtype)
        return y.astype(dtype)

    def _fake_quant_matmul(self, x: jax.Array, dtype) -> jax.Array:
        w = fake_quant_weight(self.kernel[...].astype(jnp.float32), self.mode, self.group_size)
        if self.mode == "w8a8":
            if self.act_scale is not None:
                x = fake_quant_per_tensor(x.astype(jnp.float32), self.act_scale[...])
            else:
                x = fake_quant_per_token(x.astype(jnp.float32))
        return _matmul(x.astype(dtype), w.astype(dtype))

    def _quantized_matmul(self, x: jax.Array, dtype) -> jax.Array:
        api, x = qapi, x.astype(dtype)
        w_q, w_s = self.kernel_q[...], self.kernel_scale[...]
        if self.mode == "w8a8" and self.act_scale is not None:  # static per-tensor activation scale
            s = self.act_scale[...]
            lead = x.shape[:-1]
            x2 = x.reshape(-1, x.shape[-1]).astype(jnp.float32)
            x_q = jnp.clip(jnp.round(x2 / s), -INT8_MAX, INT8_MAX).astype(jnp.int8)
            x_s = jnp.broadcast_to(s, (x2.shape[0], 1)).astype(jnp.float32)
            return qref.w8a8(x_q, x_s, w_q, w_s, out_dtype=dtype).reshape(*lead, -1)
        if self.mode == "w8a8":
            return api.w8a8_matmul(x, w_q, w_s, impl=self.impl, out_dtype=dtype)
        if self.mode == "w8a16":
            return api.w8a16_matmul(x, w_q, w_s, impl=self.impl)
        return api.w4a16_matmul(x, w_q, w_s, group_size=self.in_features // w_s.shape[0], impl=self.impl)


def _matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    return lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))


# ------------------------------------------------------------------------------------------------ model plumbing


def make_dense(quant: Mapping[str, Any] | None = None) -> Callable[..., nnx.Module]:
    """A factory with the signature of `jaxdl.layers.dense.dense` — `(din, dout, axes, *, dtype, param_dtype,
    rngs)` — building a `QuantDense` per `config.quant` (an `nnx.Linear` when the mode is `none`)."""
    q = check_config(quant)

    def dense(din: int, dout: int, axes: Axes, *, dtype: str, param_dtype: str, rngs: nnx.Rngs) -> nnx.Module:
        if q["mode"] == "none":
            return float_dense(din, dout, axes, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        return QuantDense(din, dout, axes=axes, dtype=dtype, param_dtype=param_dtype, rngs=rngs, **q)

    return dense


def set_child(root: nnx.Module, path: Sequence, child: nnx.Module) -> None:
    """Replaces the submodule of `root` at `path` (attribute names and list indices) with `child`."""
    parent = root
    for key in path[:-1]:
        parent = parent[key] if isinstance(key, int) else getattr(parent, key)
    if isinstance(path[-1], int):
        parent[path[-1]] = child
    else:
        setattr(parent, path[-1], child)


def dense_layers(model: nnx.Module) -> list[tuple[tuple, nnx.Module]]:
    """(path, layer) of every 2-D `nnx.Linear` and `QuantDense` in `model`, in graph order."""
    out = []
    for path, node in nnx.iter_graph(model):
        if isinstance(node, QuantDense) or (isinstance(node, nnx.Linear) and node.kernel[...].ndim == 2):
            out.append((tuple(path), node))
    return out


def apply_quant(model: nnx.Module, quant: Mapping[str, Any] | None) -> nnx.Module:
    """Swaps every 2-D `nnx.Linear` in `model` for a `QuantDense` per `config.quant` sharing its parameters (the
    parameter tree is unchanged, so float checkpoints restore into it). Existing `QuantDense` layers are
    re-configured. Returns the model (a new object only when `model` itself is an `nnx.Linear`); mode 'none'
    without QAT returns it untouched. Layers inside `nnx.vmap`/scanned stacks (3-D kernels) are left alone."""
    q = check_config(quant)
    if q["mode"] == "none":
        return model
    for path, layer in dense_layers(model):
        if isinstance(layer, QuantDense):
            if layer.quantized:
                raise ValueError(f"layer {'/'.join(map(str, path))} is already in inference form")
            if q["mode"] == "w4a16":
                effective_group_size(layer.in_features, q["group_size"])
            layer.mode, layer.impl, layer.qat, layer.group_size = q["mode"], q["impl"], q["qat"], q["group_size"]
            continue
        new = QuantDense.from_linear(layer, **q)
        if not path:
            return new
        set_child(model, path, new)
    return model
