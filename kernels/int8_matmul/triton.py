"""INT8 / INT4 quantized matmuls in Triton (W8A8, W8A16, W4A16): the JAX-facing launches of
`kernels.int8_matmul.triton_kernels` through `kernels.triton_call` (jax-triton on a GPU, Triton's interpreter
elsewhere).

Semantics are `kernels.int8_matmul.reference`'s (``x [M, K]``, ``w [K, N]``, ``out [M, N]``); M, N, K need not be
multiples of the blocks. Launch configurations come from `kernels.int8_matmul.launch_config`; split-K partials are
summed in XLA (deterministic; W8A8 stays bit-exact). :func:`compile_config` compiles one configuration for a GPU
architecture without a GPU. Algorithm and numerics: `kernels/README.md`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import triton

from kernels import launch_table
from kernels.int8_matmul import reference
from kernels.int8_matmul.launch_config import MODES, MatmulConfig, resolve_config
from kernels.int8_matmul.triton_kernels import _w4a16_kernel, _w8a8_kernel, _w8a16_kernel
from kernels.triton_call import resolve_backend, triton_call

__all__ = ["compile_config", "w4a16", "w8a8", "w8a16"]


def _fit(block: int, size: int, floor: int) -> int:
    """The block, shrunk to the power of two covering ``size`` (never below ``floor``)."""
    return min(block, max(floor, triton.next_power_of_2(max(size, 1))))


def _precision(dtype) -> str:
    return "ieee" if jnp.dtype(dtype) == jnp.float32 else "tf32"  # 16-bit inputs: ignored by tl.dot


def _store_dtype(out_dtype, backend: str):
    """The dtype the kernel stores: ``out_dtype``, except bfloat16 in Triton's interpreter (float32, rounded by XLA).

    Triton's interpreter converts float32 to bfloat16 by truncating the mantissa (``_convert_float`` without a
    rounding mode; its explicit ``"rtne"`` rounds ties up and can carry wrongly), while a GPU's ``.to(tl.bfloat16)``
    rounds to nearest even (``cvt.rn.bf16.f32``). So in the interpreter the same kernel writes float32 and XLA
    rounds it to bfloat16 (nearest even), which is what the GPU computes.
    """
    out_dtype = jnp.dtype(out_dtype)
    if out_dtype == jnp.bfloat16 and resolve_backend(backend) == "interpret":
        return jnp.dtype(jnp.float32)
    return out_dtype


def _launch(
    kernel, args, *, m, n, cfg: MatmulConfig, split: int, out_dtype, backend: str, name: str, debug: bool, **meta
):
    """Run ``kernel`` on a ``(tiles_m * tiles_n, split)`` grid; ``split > 1`` returns ``[split, m, n]`` partials."""
    grid = (triton.cdiv(m, cfg.block_m) * triton.cdiv(n, cfg.block_n), split)
    shape = (m, n) if split == 1 else (split, m, n)
    store = _store_dtype(out_dtype, backend) if split == 1 else jnp.dtype(out_dtype)
    out = triton_call(
        *args,
        kernel=kernel,
        out_shape=jax.ShapeDtypeStruct(shape, store),
        grid=grid,
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
        backend=backend,
        name=name,
        debug=debug,
        BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n,
        BLOCK_K=cfg.block_k,
        GROUP_M=cfg.group_m,
        EPILOGUE=split == 1,
        **meta,
    )
    return out if store == out_dtype else out.astype(out_dtype)


def compile_config(
    mode: str,
    config: MatmulConfig,
    dtype=jnp.bfloat16,
    *,
    out_dtype=None,
    group_size: int = 128,
    capability: int = 90,
    aligned: bool = True,
):
    """Compile the kernel ``config`` launches for ``mode`` for NVIDIA sm_``capability`` without a GPU.

    Returns Triton's ``CompiledKernel`` (``asm``: TTGIR, PTX, cubin; ``metadata.shared``: bytes), via
    `kernels.launch_table.compile_for_gpu`. ``dtype``: the activation dtype (W8A8: the output dtype unless
    ``out_dtype``). ``aligned=True`` specializes pointers and N, K as 16-divisible, as a launch on such shapes does
    (that enables the asynchronous-copy pipeline). ``SPLIT_K > 1`` compiles the split-K variant, else the epilogue.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    epilogue = config.split_k == 1
    act = launch_table.triton_type(dtype)
    out = launch_table.triton_type(out_dtype or dtype)
    kernel, pointers = {
        "w8a8": (_w8a8_kernel, dict(xq_ptr="i8", xs_ptr="fp32", wq_ptr="i8", ws_ptr="fp32")),
        "w8a16": (_w8a16_kernel, dict(x_ptr=act, wq_ptr="i8", ws_ptr="fp32")),
        "w4a16": (_w4a16_kernel, dict(x_ptr=act, wp_ptr="u8", s_ptr="fp32")),
    }[mode]
    out_type = out if epilogue else ("i32" if mode == "w8a8" else "fp32")
    scalars = [p.name for p in kernel.params if not p.is_constexpr and not p.name.endswith("_ptr")]  # M, N, K, ...
    arg_types = {
        **{n: "*" + t for n, t in pointers.items()},
        **dict.fromkeys(scalars, "i32"),
        "out_ptr": "*" + out_type,
    }
    constexprs = dict(
        BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k, GROUP_M=config.group_m,
        EPILOGUE=epilogue,
    )  # fmt: skip
    if mode != "w8a8":
        constexprs["PRECISION"] = _precision(dtype)
    if mode == "w4a16":
        constexprs["GROUP_SIZE"] = group_size
    divisible = [n for n in arg_types if n.endswith("_ptr") or n in ("N", "K")] if aligned else []
    return launch_table.compile_for_gpu(
        kernel,
        arg_types,
        constexprs,
        num_warps=config.num_warps,
        num_stages=config.num_stages,
        arch=capability,
        divisible=divisible,
    )


def _check_2d(x, name: str = "x") -> tuple[int, int]:
    if x.ndim != 2:
        raise ValueError(f"{name}: expected 2 dimensions [M, K], got shape {tuple(x.shape)}")
    return int(x.shape[0]), int(x.shape[1])


def w8a8(
    x_q: jax.Array,
    x_scale: jax.Array,
    w_q: jax.Array,
    w_scale: jax.Array,
    out_dtype=jnp.bfloat16,
    *,
    config: MatmulConfig | Mapping[str, Any] | None = None,
    backend: str = "auto",
    debug: bool = False,
) -> jax.Array:
    """``x_q [M, K]`` int8, ``x_scale [M, 1]`` f32, ``w_q [K, N]`` int8, ``w_scale [1, N]`` f32 -> ``[M, N]``.

    Same value as `reference.w8a8` (bit for bit where the backend rounds the same way: the int32 accumulation is
    exact). ``config``: None = ``autotune.json``; a `MatmulConfig`; or a mapping of fields to override.
    ``backend``/``debug``: as in `kernels.triton_call.triton_call` (``debug=True`` in the interpreter poisons
    unwritten output elements with NaN / the int minimum).
    """
    reference.check_x(x_q, "x_q", dtypes=(jnp.dtype(jnp.int8),), min_ndim=2)
    m, k = _check_2d(x_q, "x_q")
    n = reference.check_int8_weights(k, w_q, w_scale)
    reference._check_scale(x_scale, "x_scale", (m, 1))
    out_dtype = jnp.dtype(out_dtype)
    if m == 0 or n == 0 or k == 0:
        return jnp.zeros((m, n), out_dtype)
    cfg = resolve_config("w8a8", m, config, backend)
    cfg = dataclasses.replace(
        cfg, block_m=_fit(cfg.block_m, m, 16), block_n=_fit(cfg.block_n, n, 16), block_k=_fit(cfg.block_k, k, 32)
    )  # int8 tl.dot needs K >= 32 on NVIDIA GPUs
    tiles_k = triton.cdiv(k, cfg.block_k)
    per_split = triton.cdiv(tiles_k, min(cfg.split_k, tiles_k))
    split = triton.cdiv(tiles_k, per_split)
    xs = x_scale.astype(jnp.float32).reshape(m)
    ws = w_scale.astype(jnp.float32).reshape(n)
    args = (x_q, xs, w_q, ws, m, n, k, per_split)
    launch = functools.partial(_launch, _w8a8_kernel, args, m=m, n=n, cfg=cfg, backend=backend, debug=debug)
    if split == 1:
        return launch(split=1, out_dtype=out_dtype, name="w8a8_matmul")
    part = launch(split=split, out_dtype=jnp.int32, name="w8a8_matmul_splitk")
    acc = jnp.sum(part, axis=0, dtype=jnp.int32)  # exact
    return (acc.astype(jnp.float32) * xs[:, None] * ws[None, :]).astype(out_dtype)


def w8a16(
    x: jax.Array,
    w_q: jax.Array,
    w_scale: jax.Array,
    *,
    config: MatmulConfig | Mapping[str, Any] | None = None,
    backend: str = "auto",
    debug: bool = False,
) -> jax.Array:
    """``x [M, K]`` (f32/bf16/f16), ``w_q [K, N]`` int8, ``w_scale [1, N]`` -> ``[M, N]`` in ``x.dtype``.

    Same value as `reference.w8a16` up to float32 summation order. ``config`` as in :func:`w8a8`.
    """
    reference.check_x(x, "x", min_ndim=2)
    m, k = _check_2d(x)
    n = reference.check_int8_weights(k, w_q, w_scale)
    if m == 0 or n == 0 or k == 0:
        return jnp.zeros((m, n), x.dtype)
    cfg = resolve_config("w8a16", m, config, backend)
    cfg = dataclasses.replace(
        cfg, block_m=_fit(cfg.block_m, m, 16), block_n=_fit(cfg.block_n, n, 16), block_k=_fit(cfg.block_k, k, 16)
    )
    tiles_k = triton.cdiv(k, cfg.block_k)
    per_split = triton.cdiv(tiles_k, min(cfg.split_k, tiles_k))
    split = triton.cdiv(tiles_k, per_split)
    ws = w_scale.astype(jnp.float32).reshape(n)
    args = (x, w_q, ws, m, n, k, per_split)
    meta = dict(PRECISION=_precision(x.dtype))
    launch = functools.partial(_launch, _w8a16_kernel, args, m=m, n=n, cfg=cfg, backend=backend, debug=debug, **meta)
    if split == 1:
        return launch(split=1, out_dtype=x.dtype, name="w8a16_matmul")
    part = launch(split=split, out_dtype=jnp.float32, name="w8a16_matmul_splitk")
    return (jnp.sum(part, axis=0) * ws[None, :]).astype(x.dtype)


def w4a16(
    x: jax.Array,
    w_packed: jax.Array,
    scales: jax.Array,
    group_size: int,
    *,
    config: MatmulConfig | Mapping[str, Any] | None = None,
    backend: str = "auto",
    debug: bool = False,
) -> jax.Array:
    """``x [M, K]``, ``w_packed [K // 2, N]`` uint8, ``scales [K // group_size, N]`` -> ``[M, N]`` in ``x.dtype``.

    Same value as `reference.w4a16` up to float32 summation order. ``BLOCK_K`` is the largest power of two
    <= the config's that divides ``group_size`` (at least 32 on a GPU, where each nibble dot needs K >= 16; 2 in
    the interpreter). ``SPLIT_K`` splits the groups. ``config`` as in :func:`w8a8`.
    """
    reference.check_x(x, "x", min_ndim=2)
    m, k = _check_2d(x)
    n = reference.check_int4_weights(k, w_packed, scales, group_size)
    if m == 0 or n == 0 or k == 0:
        return jnp.zeros((m, n), x.dtype)
    cfg = resolve_config("w4a16", m, config, backend)
    floor = 32 if resolve_backend(backend) == "gpu" else 2
    cfg = dataclasses.replace(
        cfg,
        block_m=_fit(cfg.block_m, m, 16),
        block_n=_fit(cfg.block_n, n, 16),
        block_k=reference.int4_block_k(cfg.block_k, group_size, floor),
    )
    groups = k // group_size
    per_split = triton.cdiv(groups, min(cfg.split_k, groups))
    split = triton.cdiv(groups, per_split)
    args = (x, w_packed, scales.astype(jnp.float32), m, n, k, per_split)
    meta = dict(GROUP_SIZE=group_size, PRECISION=_precision(x.dtype))
    launch = functools.partial(_launch, _w4a16_kernel, args, m=m, n=n, cfg=cfg, backend=backend, debug=debug, **meta)
    if split == 1:
        return launch(split=1, out_dtype=x.dtype, name="w4a16_matmul")
    part = launch(split=split, out_dtype=jnp.float32, name="w4a16_matmul_splitk")
    return jnp.sum(part, axis=0).astype(x.dtype)
