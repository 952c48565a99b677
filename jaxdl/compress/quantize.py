"""Post-training quantization (PTQ): activation calibration, weight conversion, quantized checkpoints.

Weights are always quantized symmetrically by abs-max with the kernels' own quantizers
(`kernels.int8_matmul.reference`): per output column to int8 (`w8a8`, `w8a16`) or per group of `group_size`
input rows to int4 (`w4a16`). What calibration decides is how `w8a8` quantizes *activations*:

* `dynamic` (the default): one scale per token (row), computed at run time from the row's abs-max
  (`api.w8a8_matmul`). Nothing to calibrate, never clips, costs one reduction per row.
* `absmax` (static): one per-tensor scale per layer = max |x| / 127 over all calibration batches.
* `percentile` (static): the `percentile`-th percentile (e.g. 99.99) of |x| over every element of every
  calibration batch, / 127. Values above it clip; in exchange the grid is finer for the rest. Computed in two
  passes: abs-max first, then a `bins`-bin histogram of |x| on [0, abs-max] (resolution abs-max / bins).

Static scales are what integer-only deployments need (no per-row reduction, scales folded ahead of time); they
are stored as each layer's `act_scale` and run the int8 x int8 -> int32 reference matmul.

Entry points:
  `calibrate(model, batches, method=...)`          -> {layer path: static activation scale}
  `quantize_model(model, mode, group_size, ...)`   -> the model with every dense layer in inference form
  `quantize_params(params, mode, group_size, ...)` -> the same conversion on a params pytree (pure dicts)
  `convert_checkpoint(src_workdir, dst_dir, mode)` -> restores a trainer checkpoint, writes a quantized one,
                                                      returns the bytes before/after
  `load_quantized(dst_dir)`                        -> (quantized model, info) from what `convert_checkpoint` wrote
  `restore_float(workdir)`                         -> (float model, config, step, ds_info) from a trainer workdir

A quantized checkpoint directory holds `config.json` (the source run's config), `quantization.json` (mode,
group size, calibration, shapes, the byte report) and `checkpoints/<step>` (a `jaxdl.checkpoint` step whose state
is `{"model": pure dict of the quantized model's state}`: int8 / packed-int4 `kernel_q`, float32 `kernel_scale`
and `act_scale`, the float biases and every non-dense parameter; the optimizer state is dropped).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from ml_collections import ConfigDict

from jaxdl import config as config_lib
from jaxdl import data, models
from jaxdl.checkpoint import Checkpointer
from jaxdl.layers.quantized import (
    INT8_MAX,
    MODES,
    CalibrationStats,
    QuantDense,
    apply_quant,
    check_config,
    dense_layers,
    quantize_kernel,
    set_child,
)

CALIBRATIONS = ("dynamic", "absmax", "percentile")
Path = tuple


# ------------------------------------------------------------------------------------------------- calibration


def _default_forward(model: nnx.Module, batch: Any) -> jax.Array:
    x = batch["input"] if isinstance(batch, Mapping) else batch
    return model(x, train=False)


def calibrate(
    model: nnx.Module,
    batches: Iterable[Any],
    *,
    method: str = "absmax",
    percentile: float = 99.99,
    bins: int = 2048,
    forward: Callable[[nnx.Module, Any], Any] | None = None,
) -> dict[Path, float]:
    """Static per-tensor activation scales of every dense layer's input over `batches`: {layer path: scale}.

    `method`: "absmax" (max |x| / 127) or "percentile" (`percentile`-th percentile of |x| / 127, from a
    `bins`-bin histogram on [0, abs-max]). `forward(model, batch)` runs the model (default:
    `model(batch["input"], train=False)`). The model runs in float (its `nnx.Linear` layers are swapped for
    float `QuantDense` observers during the passes and put back afterwards); it is returned unchanged.
    """
    if method not in ("absmax", "percentile"):
        raise ValueError(f"calibration method={method!r}: use 'absmax' or 'percentile' ('dynamic' needs none)")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile={percentile} must be in (0, 100]")
    batches = list(batches)  # two passes for percentile; calibration sets are small
    if not batches:
        raise ValueError("calibrate: no calibration batches")
    forward = forward or _default_forward
    swapped, layers = [], []
    for path, layer in dense_layers(model):
        if not path:
            raise ValueError("calibrate: the model itself is a dense layer; wrap it in a Module")
        if not isinstance(layer, QuantDense):
            observer = QuantDense.from_linear(layer)  # mode "none": the float forward
            set_child(model, path, observer)
            swapped.append((path, layer))
            layer = observer
        layers.append((path, layer))
    step = nnx.jit(forward)
    try:
        for _, layer in layers:
            layer.calibrating = "absmax"
            layer.act_absmax = CalibrationStats(jnp.zeros((), jnp.float32))
        for batch in batches:
            step(model, batch)
        amax = {path: float(layer.act_absmax[...]) for path, layer in layers}
        top = dict(amax)
        if method == "percentile":
            for _, layer in layers:
                layer.calibrating = "hist"
                layer.act_hist = CalibrationStats(jnp.zeros((bins,), jnp.float32))
            for batch in batches:
                step(model, batch)
            for path, layer in layers:
                top[path] = percentile_from_histogram(np.asarray(layer.act_hist[...]), amax[path], percentile)
    finally:
        for _, layer in layers:
            layer.calibrating, layer.act_absmax, layer.act_hist = None, None, None
        for path, linear in swapped:
            set_child(model, path, linear)
    return {path: (t / INT8_MAX if t > 0 else 1.0) for path, t in top.items()}


def percentile_from_histogram(hist: np.ndarray, top: float, percentile: float) -> float:
    """The `percentile`-th percentile of values whose histogram on [0, top] is `hist` (upper edge of the bin
    where the cumulative count first reaches it)."""
    total = hist.sum()
    if total == 0 or top == 0:
        return top
    cdf = np.cumsum(hist) / total
    i = int(np.searchsorted(cdf, percentile / 100.0 - 1e-12))
    return float(min(i + 1, len(hist)) / len(hist) * top)


# ------------------------------------------------------------------------------------------------- conversion


def quantize_model(
    model: nnx.Module,
    mode: str,
    group_size: int = 128,
    *,
    impl: str = "auto",
    act_scales: Mapping[Path, float] | None = None,
) -> nnx.Module:
    """Converts every dense layer (2-D `nnx.Linear` or `QuantDense`) of `model` in place to the inference form of
    `mode`; layers named in `act_scales` (w8a8) get that static activation scale. Returns the model."""
    check_config(dict(mode=mode, impl=impl, group_size=group_size))
    if mode == "none":
        raise ValueError(f"config.quant.mode='none' has nothing to quantize; use one of {MODES[1:]}")
    model = apply_quant(model, dict(mode=mode, impl=impl, group_size=group_size))
    unknown = set(act_scales or {}) - {path for path, _ in dense_layers(model)}
    if unknown:
        raise ValueError(f"act_scales name layers the model does not have: {sorted(map(str, unknown))}")
    for path, layer in dense_layers(model):
        if act_scales and path in act_scales:
            layer.set_act_scale(act_scales[path])
        layer.quantize()
    return model


def _pure(tree: Any) -> Any:
    return nnx.to_pure_dict(tree) if isinstance(tree, nnx.State) else tree


def quantize_params(
    params: Any,
    mode: str,
    group_size: int = 128,
    *,
    act_scales: Mapping[Path, float] | None = None,
) -> dict:
    """A params pytree (an `nnx.State` or its pure nested dict) with every dense layer's 2-D `kernel` replaced by
    `kernel_q` + `kernel_scale` (and `act_scale` for layers in `act_scales`); everything else is kept. The result
    is the pure dict of `quantize_model(model, ...)`'s parameters and quantized variables."""
    check_config(dict(mode=mode, group_size=group_size))
    if mode == "none":
        raise ValueError(f"config.quant.mode='none' has nothing to quantize; use one of {MODES[1:]}")
    found: set[Path] = set()

    def walk(node: Any, path: Path) -> Any:
        if not isinstance(node, Mapping):
            return node
        kernel = node.get("kernel")
        if kernel is not None and not isinstance(kernel, Mapping) and jnp.ndim(kernel) == 2:
            out = {k: v for k, v in node.items() if k != "kernel"}
            out.update(quantize_kernel(jnp.asarray(kernel), mode, group_size))
            if act_scales and path in act_scales:
                if mode != "w8a8":
                    raise ValueError(f"static activation scales need config.quant.mode='w8a8', not {mode!r}")
                out["act_scale"] = jnp.asarray(act_scales[path], jnp.float32).reshape(())
                found.add(path)
            return out
        return {k: walk(v, (*path, k)) for k, v in node.items()}

    out = walk(_pure(params), ())
    if missing := set(act_scales or {}) - found:
        raise ValueError(f"act_scales name layers without a dense kernel: {sorted(map(str, missing))}")
    return out


def tree_bytes(tree: Any) -> int:
    """Bytes of every array leaf of `tree` (arrays or ShapeDtypeStructs)."""
    return int(sum(np.prod(x.shape, dtype=np.int64) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def weight_bytes(params: Any) -> int:
    """Bytes of the dense weights of a params pytree: 2-D `kernel` leaves, or `kernel_q` + `kernel_scale`."""
    total = 0
    for path, x in jax.tree_util.tree_leaves_with_path(_pure(params)):
        name = getattr(path[-1], "key", None)
        if (name == "kernel" and x.ndim == 2) or name in ("kernel_q", "kernel_scale"):
            total += int(np.prod(x.shape, dtype=np.int64) * jnp.dtype(x.dtype).itemsize)
    return total


def _deep_merge(a: Mapping, b: Mapping) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if k in out and isinstance(v, Mapping) else v
    return out


def _dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


# ------------------------------------------------------------------------------------------- checkpoints


def load_config(workdir: str) -> ConfigDict:
    """The validated config a trainer run (or a quantized checkpoint) wrote to `<workdir>/config.json`."""
    return config_lib.load_run_config(workdir)


def _build(config: ConfigDict, ds_info: Mapping) -> Callable[[nnx.Rngs], nnx.Module]:
    return lambda rngs: models.make(
        config.model, input_shape=tuple(ds_info["input_shape"]), num_classes=ds_info["num_classes"], rngs=rngs
    )


def restore_float(workdir: str, step: int | None = None) -> tuple[nnx.Module, ConfigDict, int, dict]:
    """(float model, config, step, dataset info) of a trainer run's checkpoint (default: the latest), on one
    device (`jaxdl.state.restore_run`)."""
    from jaxdl.state import restore_run  # the trainer's state imports the data stack; only needed here

    run = restore_run(workdir, step, devices=[jax.devices()[0]])
    with nnx.use_eager_sharding(False):  # the float model: config.quant's layers share its parameter tree
        graphdef = nnx.graphdef(nnx.eval_shape(lambda: _build(run.config, run.ds_info)(nnx.Rngs(0))))
    return nnx.merge(graphdef, run.state["params"], run.state["rest"]), run.config, run.step, run.ds_info


def calibration_batches(config: ConfigDict, num_batches: int, batch_size: int | None = None) -> list[dict]:
    """The first `num_batches` batches (in file order) of the run's training split, preprocessed."""
    source = data.load(config.data.name, config.data.train_split, config.data.data_dir or None)
    size = batch_size or config.data.batch_size
    out = []
    for batch in data.eval_batches(source, dataset=config.data.name, batch_size=size):
        if len(out) == num_batches or float(batch["mask"].min()) < 1:  # full batches only
            break
        out.append({"input": batch["input"], "label": batch["label"]})
    return out


def convert_checkpoint(
    src_workdir: str,
    dst_dir: str,
    mode: str,
    *,
    group_size: int = 128,
    calibration: str = "dynamic",
    percentile: float = 99.99,
    num_calibration_batches: int = 8,
    step: int | None = None,
) -> dict[str, Any]:
    """Restores the trainer checkpoint of `src_workdir` (default: latest step), quantizes its dense weights to
    `mode` (and, with `calibration` "absmax"/"percentile" on w8a8, calibrates static activation scales on the
    first `num_calibration_batches` training batches) and saves a quantized checkpoint under `dst_dir`.

    Returns the report (also in `<dst_dir>/quantization.json`): `weight_bytes_before/after` (the dense kernels),
    `weight_compression`, `model_bytes_before/after` (every model array), `bytes_saved` (model bytes), and the
    on-disk sizes of both step directories (the source one includes the optimizer state).
    """
    check_config(dict(mode=mode, group_size=group_size))
    if mode == "none":
        raise ValueError(f"config.quant.mode='none' has nothing to quantize; use one of {MODES[1:]}")
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration={calibration!r} is not one of {CALIBRATIONS}")
    if calibration != "dynamic" and mode != "w8a8":
        raise ValueError(f"calibration={calibration!r} sets static activation scales, which only w8a8 has ({mode!r})")
    model, config, step, ds_info = restore_float(src_workdir, step)
    _, params, rest = nnx.split(model, nnx.Param, ...)
    params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
    act_scales = None
    if calibration != "dynamic":
        act_scales = calibrate(
            model, calibration_batches(config, num_calibration_batches), method=calibration, percentile=percentile
        )
    qparams = quantize_params(params, mode, group_size, act_scales=act_scales)
    state = {"model": _deep_merge(qparams, rest)}

    os.makedirs(dst_dir, exist_ok=True)
    src_step_dir = os.path.join(src_workdir, "checkpoints", str(step))
    info = {
        "mode": mode,
        "group_size": group_size,
        "calibration": calibration,
        "percentile": percentile if calibration == "percentile" else None,
        "act_scale_layers": [list(p) for p in sorted(act_scales or {}, key=str)],
        "dataset": config.data.name,
        "input_shape": list(ds_info["input_shape"]),
        "num_classes": int(ds_info["num_classes"]),
        "source_workdir": os.path.abspath(src_workdir),
        "source_step": step,
    }
    with Checkpointer(os.path.join(dst_dir, "checkpoints"), async_save=False, max_to_keep=None) as ckpt:
        ckpt.save(step, state, {"quantization": info}, force=True)
        dst_step_dir = str(ckpt.step_dir(step))
    model_before = tree_bytes(params) + tree_bytes(rest)
    report = {
        "weight_bytes_before": weight_bytes(params),
        "weight_bytes_after": weight_bytes(qparams),
        "model_bytes_before": model_before,
        "model_bytes_after": tree_bytes(state),
        "checkpoint_disk_bytes_before": _dir_bytes(src_step_dir),
        "checkpoint_disk_bytes_after": _dir_bytes(dst_step_dir),
    }
    report["weight_compression"] = report["weight_bytes_before"] / report["weight_bytes_after"]
    report["bytes_saved"] = report["model_bytes_before"] - report["model_bytes_after"]
    with open(os.path.join(dst_dir, "config.json"), "w") as f:
        json.dump(config.to_dict(), f, indent=2, default=str)
    with open(os.path.join(dst_dir, "quantization.json"), "w") as f:
        json.dump({**info, "report": report}, f, indent=2)
    return report


def load_quantized(dst_dir: str, *, impl: str = "auto", step: int | None = None) -> tuple[nnx.Module, dict]:
    """(quantized model in inference form, the quantization.json info) from a `convert_checkpoint` directory."""
    path = os.path.join(dst_dir, "quantization.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist: is {dst_dir!r} a convert_checkpoint output?")
    with open(path) as f:
        info = json.load(f)
    config = load_config(dst_dir)
    scales = {tuple(p): 1.0 for p in info["act_scale_layers"]}
    build = _build(config, info)

    def make() -> nnx.Module:
        return quantize_model(build(nnx.Rngs(0)), info["mode"], info["group_size"], impl=impl, act_scales=scales)

    with nnx.use_eager_sharding(False):
        graphdef, abstract = nnx.split(nnx.eval_shape(make))
    single = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = {
        "model": jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=single), nnx.to_pure_dict(abstract)
        )
    }
    with Checkpointer(os.path.join(dst_dir, "checkpoints"), async_save=False, max_to_keep=None) as ckpt:
        state, _ = ckpt.restore(target, step)
    nnx.replace_by_pure_dict(abstract, state["model"])
    return nnx.merge(graphdef, abstract), info
