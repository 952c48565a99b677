"""INT8 / INT4 quantized matmuls in Triton: W8A8, W8A16 and W4A16, launched through `kernels.triton_call`.

Semantics are those of `kernels.int8_matmul.reference` (layout ``x [M, K]``, ``w [K, N]``, ``out [M, N]``). Each
kernel is written once with `kernels.triton_call.jit`: on a GPU it launches through jax-triton, elsewhere it runs
in Triton's interpreter inside a `jax.pure_callback` (tests and correctness only).

Kernels (one program per ``[BLOCK_M, BLOCK_N]`` output tile and K slice; grid ``(tiles_m * tiles_n, SPLIT_K)``)
------------------------------------------------------------------------------------------------------------
* `_w8a8_kernel`: int8 x int8 tiles through ``tl.dot(..., out_dtype=tl.int32)`` into an int32 accumulator (exact);
  epilogue ``(float32(acc) * x_scale[:, None]) * w_scale[None, :]`` cast to the output dtype (bf16 or fp32), the
  per-token x per-channel dequantization fused into the store.
* `_w8a16_kernel`: weight-only int8. Each int8 ``w`` tile is loaded (1 byte per weight from memory), converted in
  registers to the activation dtype (exact for int8), and multiplied with float32 accumulation; the per-channel
  scale is applied once in the epilogue (it commutes with the sum over k). float32 activations use
  ``input_precision="ieee"`` (no TF32).
* `_w4a16_kernel`: weight-only int4, two signed nibbles per byte along K (low nibble = even k). A packed tile
  ``[BLOCK_K // 2, BLOCK_N]`` is loaded once and split into its low and high nibbles (sign-extended with
  ``((v & 15) ^ 8) - 8``); instead of interleaving them back into a ``[BLOCK_K, BLOCK_N]`` tile, the kernel loads
  the matching even and odd columns of ``x`` (stride-2 loads of the small activation tile) and issues two dots.
  Group-wise scales: ``BLOCK_K`` divides ``group_size``; a group's partial product is accumulated in a separate
  float32 tile and added to the accumulator times that group's scales (``acc += part * scales[g]``), so the
  tensor-core inputs are the exact integers and the scale costs one multiply per output element per group.

Decode shapes (small M): the autotune table gives small ``BLOCK_M`` (16, the smallest ``tl.dot`` tile) and
``SPLIT_K > 1``: the K range is cut into ``SPLIT_K`` slices (whole groups for W4A16), each program writes its
partial accumulator (int32 for W8A8, float32 otherwise) to a ``[SPLIT_K, M, N]`` buffer, and the wrapper sums the
slices in XLA and applies the same epilogue. Unlike atomic split-K, the result is deterministic, and for W8A8 it
is bit-identical to ``SPLIT_K = 1`` (the int32 sum is exact).

Tiles of the ``(m, n)`` grid are visited in groups of ``GROUP_M`` row tiles (the Triton matmul tutorial's L2
swizzle). M, N and K need not be multiples of the blocks: loads are masked (``other=0``) and stores masked (W4A16:
K is a multiple of ``group_size`` by construction). Offsets into ``x``/``w``/``out`` are computed in int64.

Launch configurations (``BLOCK_M/N/K``, ``GROUP_M``, ``SPLIT_K``, ``num_warps``, ``num_stages``) come from
``autotune.json`` keyed by (device, mode, M bucket), see :func:`lookup_config`; :func:`compile_config` compiles
a configuration for sm_90 without a GPU (shared memory, PTX: wgmma, cp.async pipelining, no local memory).

In the interpreter, bfloat16 outputs are stored as float32 and rounded by XLA (see :func:`_store_dtype`): Triton's
interpreter truncates float32 -> bfloat16 conversions where a GPU rounds to nearest even.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import triton
import triton.language as tl

from kernels import launch_table
from kernels.int8_matmul import reference
from kernels.launch_table import device_key, field_matches, short_device_name  # noqa: F401 (re-exported)
from kernels.triton_call import jit, resolve_backend, triton_call

__all__ = [
    "MODES",
    "MatmulConfig",
    "compile_config",
    "device_key",
    "load_table",
    "lookup_config",
    "m_bucket",
    "w4a16",
    "w8a8",
    "w8a16",
]

TABLE_PATH = pathlib.Path(__file__).with_name("autotune.json")
MODES = ("w8a8", "w8a16", "w4a16")
_CONFIG_KEYS = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M", "SPLIT_K", "num_warps", "num_stages")


# ===============================================================================================================
# Kernels
# ===============================================================================================================
# fmt: off


@jit
def _tile_ids(M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """(pid_m, pid_n) of program_id(0), row tiles grouped by GROUP_M for L2 reuse."""
    pid = tl.program_id(0)
    tiles_m = tl.cdiv(M, BLOCK_M)
    tiles_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * tiles_n
    first_m = (pid // per_group) * GROUP_M
    group_rows = tl.minimum(tiles_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % group_rows
    pid_n = (pid % per_group) // group_rows
    return pid_m, pid_n


@jit
def _w8a8_kernel(
    xq_ptr, xs_ptr, wq_ptr, ws_ptr, M, N, K, tiles_per_split, out_ptr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    EPILOGUE: tl.constexpr,
):
    """out [M, N] (EPILOGUE) or int32 partial sums [SPLIT_K, M, N] of int8 x_q [M, K] @ int8 w_q [K, N]."""
    pid_m, pid_n = _tile_ids(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    pid_k = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    m_mask = offs_m < M
    n_mask = offs_n < N
    rows = offs_m.to(tl.int64) * K
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    t_lo = pid_k * tiles_per_split
    t_hi = tl.minimum(t_lo + tiles_per_split, tl.cdiv(K, BLOCK_K))
    for t in range(t_lo, t_hi):
        ks = t * BLOCK_K + offs_k
        k_mask = ks < K
        a = tl.load(xq_ptr + rows[:, None] + ks[None, :], mask=m_mask[:, None] & k_mask[None, :], other=0)
        b = tl.load(wq_ptr + ks.to(tl.int64)[:, None] * N + offs_n[None, :], mask=k_mask[:, None] & n_mask[None, :],
                    other=0)
        acc = tl.dot(a, b, acc, out_dtype=tl.int32)
    out_offs = offs_m.to(tl.int64)[:, None] * N + offs_n[None, :]
    out_mask = m_mask[:, None] & n_mask[None, :]
    if EPILOGUE:
        xs = tl.load(xs_ptr + offs_m, mask=m_mask, other=0.0)
        ws = tl.load(ws_ptr + offs_n, mask=n_mask, other=0.0)
        out = acc.to(tl.float32) * xs[:, None] * ws[None, :]
        tl.store(out_ptr + out_offs, out.to(out_ptr.dtype.element_ty), mask=out_mask)
    else:
        tl.store(out_ptr + pid_k.to(tl.int64) * M * N + out_offs, acc, mask=out_mask)


@jit
def _w8a16_kernel(
    x_ptr, wq_ptr, ws_ptr, M, N, K, tiles_per_split, out_ptr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    EPILOGUE: tl.constexpr, PRECISION: tl.constexpr,
):
    """out [M, N] = (x @ w_q) * w_scale (EPILOGUE) or float32 partials [SPLIT_K, M, N] of x @ w_q (no scale)."""
    pid_m, pid_n = _tile_ids(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    pid_k = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    m_mask = offs_m < M
    n_mask = offs_n < N
    rows = offs_m.to(tl.int64) * K
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    t_lo = pid_k * tiles_per_split
    t_hi = tl.minimum(t_lo + tiles_per_split, tl.cdiv(K, BLOCK_K))
    for t in range(t_lo, t_hi):
        ks = t * BLOCK_K + offs_k
        k_mask = ks < K
        a = tl.load(x_ptr + rows[:, None] + ks[None, :], mask=m_mask[:, None] & k_mask[None, :], other=0.0)
        b = tl.load(wq_ptr + ks.to(tl.int64)[:, None] * N + offs_n[None, :], mask=k_mask[:, None] & n_mask[None, :],
                    other=0)
        acc = tl.dot(a, b.to(a.dtype), acc, input_precision=PRECISION)  # int8 -> x dtype is exact
    out_offs = offs_m.to(tl.int64)[:, None] * N + offs_n[None, :]
    out_mask = m_mask[:, None] & n_mask[None, :]
    if EPILOGUE:
        ws = tl.load(ws_ptr + offs_n, mask=n_mask, other=0.0)
        out = acc * ws[None, :]
        tl.store(out_ptr + out_offs, out.to(out_ptr.dtype.element_ty), mask=out_mask)
    else:
        tl.store(out_ptr + pid_k.to(tl.int64) * M * N + out_offs, acc, mask=out_mask)


@jit
def _w4a16_kernel(
    x_ptr, wp_ptr, s_ptr, M, N, K, groups_per_split, out_ptr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    GROUP_SIZE: tl.constexpr, EPILOGUE: tl.constexpr, PRECISION: tl.constexpr,
):
    """out [M, N] = sum_g (x[:, g] @ q[g]) * scales[g] (EPILOGUE: cast to out dtype; else float32 partials)."""
    pid_m, pid_n = _tile_ids(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    pid_k = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_h = tl.arange(0, BLOCK_K // 2)  # packed rows of a tile: k = 2 * h (low nibble) and 2 * h + 1 (high)
    m_mask = offs_m < M
    n_mask = offs_n < N
    rows = offs_m.to(tl.int64) * K
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    g_lo = pid_k * groups_per_split
    g_hi = tl.minimum(g_lo + groups_per_split, K // GROUP_SIZE)
    for g in range(g_lo, g_hi):
        part = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for i in range(GROUP_SIZE // BLOCK_K):
            h = (g * GROUP_SIZE + i * BLOCK_K) // 2 + offs_h  # packed row index; K is a multiple of GROUP_SIZE
            p = tl.load(wp_ptr + h.to(tl.int64)[:, None] * N + offs_n[None, :], mask=n_mask[None, :], other=0)
            v = p.to(tl.int32)
            lo = ((v & 15) ^ 8) - 8  # even k, sign-extended
            hi = ((v >> 4) ^ 8) - 8  # odd k
            x_even = tl.load(x_ptr + rows[:, None] + (2 * h)[None, :], mask=m_mask[:, None], other=0.0)
            x_odd = tl.load(x_ptr + rows[:, None] + (2 * h + 1)[None, :], mask=m_mask[:, None], other=0.0)
            part = tl.dot(x_even, lo.to(x_even.dtype), part, input_precision=PRECISION)
            part = tl.dot(x_odd, hi.to(x_odd.dtype), part, input_precision=PRECISION)
        s = tl.load(s_ptr + g * N + offs_n, mask=n_mask, other=0.0)
        acc += part * s[None, :]
    out_offs = offs_m.to(tl.int64)[:, None] * N + offs_n[None, :]
    out_mask = m_mask[:, None] & n_mask[None, :]
    if EPILOGUE:
        tl.store(out_ptr + out_offs, acc.to(out_ptr.dtype.element_ty), mask=out_mask)
    else:
        tl.store(out_ptr + pid_k.to(tl.int64) * M * N + out_offs, acc, mask=out_mask)


# fmt: on
# ===============================================================================================================
# Launch configurations: the autotune table
# ===============================================================================================================


@dataclasses.dataclass(frozen=True)
class MatmulConfig:
    """One kernel launch: tile ``[block_m, block_n]``, K step ``block_k``, L2 group ``group_m`` (row tiles),
    ``split_k`` K slices, warps and software-pipeline stages; ``source`` says where the numbers come from."""

    block_m: int
    block_n: int
    block_k: int
    group_m: int = 8
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 2
    source: str = ""

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str = "config") -> MatmulConfig:
        values = {k: v for k, v in d.items() if k in _CONFIG_KEYS}
        missing = {"BLOCK_M", "BLOCK_N", "BLOCK_K"} - set(values)
        if missing:
            raise ValueError(f"{where}: missing keys {sorted(missing)}")
        out = cls(
            block_m=int(values["BLOCK_M"]),
            block_n=int(values["BLOCK_N"]),
            block_k=int(values["BLOCK_K"]),
            group_m=int(values.get("GROUP_M", 8)),
            split_k=int(values.get("SPLIT_K", 1)),
            num_warps=int(values.get("num_warps", 4)),
            num_stages=int(values.get("num_stages", 2)),
            source=str(d.get("source", "")),
        )
        out.check(where)
        return out

    def to_json(self) -> dict[str, Any]:
        return dict(
            BLOCK_M=self.block_m,
            BLOCK_N=self.block_n,
            BLOCK_K=self.block_k,
            GROUP_M=self.group_m,
            SPLIT_K=self.split_k,
            num_warps=self.num_warps,
            num_stages=self.num_stages,
        )

    def check(self, where: str = "config") -> None:
        for name, value in (("BLOCK_M", self.block_m), ("BLOCK_N", self.block_n), ("BLOCK_K", self.block_k)):
            if value < 1 or value & (value - 1):
                raise ValueError(f"{where}.{name}: expected a power of two, got {value}")
        if self.group_m < 1:
            raise ValueError(f"{where}.GROUP_M: expected a positive int, got {self.group_m}")
        if self.split_k < 1:
            raise ValueError(f"{where}.SPLIT_K: expected a positive int, got {self.split_k}")
        if self.num_warps not in (1, 2, 4, 8, 16):
            raise ValueError(f"{where}.num_warps: expected 1, 2, 4, 8 or 16, got {self.num_warps}")
        if self.num_stages < 1:
            raise ValueError(f"{where}.num_stages: expected a positive int, got {self.num_stages}")

    def merged(self, override: Mapping[str, Any], where: str = "config") -> MatmulConfig:
        """This config with some fields replaced: ``{"BLOCK_K": 64, "SPLIT_K": 2}``."""
        unknown = set(override) - set(_CONFIG_KEYS) - {"source"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)} (expected some of {list(_CONFIG_KEYS)})")
        return MatmulConfig.from_json(
            {**self.to_json(), **override, "source": override.get("source", "user config")}, where
        )


def m_bucket(m: int, bounds: tuple[int, ...] = (1, 16, 64, 256)) -> str:
    """The table's M class of a call: ``"<=B"`` for the smallest bound B >= m, else ``">B_last"``."""
    for bound in bounds:
        if m <= bound:
            return f"<={bound}"
    return f">{bounds[-1]}"


def load_table(path: str | pathlib.Path | None = None) -> dict[str, Any]:
    """The parsed launch table (`autotune.json` beside this module unless `path` is given)."""
    return launch_table.load_table(path or TABLE_PATH)


@functools.cache
def _default_table() -> dict[str, Any]:
    return load_table()


def lookup_config(
    mode: str, m: int, *, device: str | None = None, table: Mapping[str, Any] | None = None
) -> MatmulConfig:
    """The table's launch configuration for ``mode`` (``w8a8``/``w8a16``/``w4a16``) and ``m`` rows on ``device``.

    An entry matches when each of its fields ``device``, ``mode``, ``m`` (see :func:`m_bucket`) is absent, ``"*"``,
    equal to the call's value or a list containing it; ``device`` also accepts the classes ``"gpu"`` and
    ``"interpret"``. The most specific match wins (a named device counts 10, each other given field 1; ties: the
    earlier entry). No match: ``defaults[device class][mode]``.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    table = _default_table() if table is None else table
    device = device_key() if device is None else device
    call = dict(mode=mode, m=m_bucket(m, tuple(table.get("m_buckets", (1, 16, 64, 256)))))
    device_class = "interpret" if device == "interpret" else "gpu"
    best = launch_table.best_entry(table["entries"], device, call)
    if best is not None:
        i, entry = best
        return MatmulConfig.from_json(entry, f"autotune.json entries[{i}]")
    defaults = table.get("defaults", {}).get(device_class, {})
    if mode not in defaults:
        raise ValueError(f"autotune.json: no entry matches {device} {call} and there is no defaults.{device_class}")
    return MatmulConfig.from_json(
        {**defaults[mode], "source": defaults.get("source", "")}, f"autotune.json defaults.{device_class}.{mode}"
    )


def _resolve_config(mode: str, m: int, config: MatmulConfig | Mapping[str, Any] | None, backend: str):
    if isinstance(config, MatmulConfig):
        config.check()
        return config
    base = lookup_config(mode, m, device=device_key(backend))
    return base if config is None else base.merged(config)


def _fit(block: int, size: int, floor: int) -> int:
    """The block, shrunk to the power of two covering ``size`` (never below ``floor``)."""
    return min(block, max(floor, triton.next_power_of_2(max(size, 1))))


# ===============================================================================================================
# Launches
# ===============================================================================================================


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


_TRITON_TYPES = {
    jnp.dtype(jnp.float32): "fp32",
    jnp.dtype(jnp.bfloat16): "bf16",
    jnp.dtype(jnp.float16): "fp16",
    jnp.dtype(jnp.int8): "i8",
    jnp.dtype(jnp.uint8): "u8",
    jnp.dtype(jnp.int32): "i32",
}


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
    """Compile one kernel for an NVIDIA GPU of ``capability`` (default 90, Hopper) without needing one.

    For ahead-of-time checks of a launch configuration (no GPU, no JAX involved): returns Triton's
    ``CompiledKernel``, whose ``asm`` holds the TTGIR, PTX and cubin and ``metadata.shared`` the shared memory in
    bytes. ``dtype`` is the activation dtype (W8A8: the output dtype unless ``out_dtype``); ``aligned=True``
    specializes pointers and N, K as 16-divisible, as a launch on such shapes does (that is what enables the
    asynchronous-copy pipeline). The kernel variant is the one the config launches: split-K partials when
    ``SPLIT_K > 1``, else the fused epilogue.
    """
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    epilogue = config.split_k == 1
    act = _TRITON_TYPES[jnp.dtype(dtype)]
    out = _TRITON_TYPES[jnp.dtype(out_dtype or dtype)]
    kernel, types = {
        "w8a8": (_w8a8_kernel, ["i8", "fp32", "i8", "fp32"]),
        "w8a16": (_w8a16_kernel, [act, "i8", "fp32"]),
        "w4a16": (_w4a16_kernel, [act, "u8", "fp32"]),
    }[mode]
    names = [p.name for p in kernel.params if not p.is_constexpr]
    partial = "i32" if mode == "w8a8" else "fp32"
    types = types + ["i32"] * 4 + [out if epilogue else partial]
    signature = {name: ("*" + t if name.endswith("_ptr") else t) for name, t in zip(names, types, strict=True)}
    attrs = {}
    if aligned:
        attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names) if n.endswith("_ptr") or n in ("N", "K")}
    constexprs = dict(
        BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k, GROUP_M=config.group_m,
        EPILOGUE=epilogue,
    )  # fmt: skip
    if mode != "w8a8":
        constexprs["PRECISION"] = _precision(dtype)
    if mode == "w4a16":
        constexprs["GROUP_SIZE"] = group_size
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    # enable_fp_fusion=True: Triton 3.9's default for launches (FMA contraction, e.g. W4A16's acc += part * s).
    options = dict(num_warps=config.num_warps, num_stages=config.num_stages, enable_fp_fusion=True)
    return triton.compile(source, target=GPUTarget("cuda", capability, 32), options=options)


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
    cfg = _resolve_config("w8a8", m, config, backend)
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
    cfg = _resolve_config("w8a16", m, config, backend)
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
    cfg = _resolve_config("w4a16", m, config, backend)
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
