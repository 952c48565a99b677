"""Regenerate `autotune.json` of the Triton attention kernels by timing launch configurations on a GPU.

Run it as a module from the repository root (as a script, the `triton.py` beside it would shadow `triton`)::

    python -m kernels.attention.tune                                   # default sweep, rewrites autotune.json
    python -m kernels.attention.tune --head-dims 128 --causal true --seqs 4096 --quick --table OUT/autotune.json
    python -m kernels.attention.tune --compile-report                  # offline sm_90 resource report

Per shape class (head_dim x causal x dtype x sequence), each kernel's candidate configurations are jitted, warmed
up and timed (median of `--repeats`, synchronized, random inputs rotated over `--input-sets`); the fastest of each
kernel becomes a "measured" entry replacing an earlier measured entry of its class. Configurations that fail to
compile or launch are reported and skipped; without a GPU the sweep refuses and changes nothing. `--compile-report`
compiles the table's configurations for `--arch` with Triton's bundled ptxas (registers, spills, shared memory,
HGMMA vs HMMA). Details: `kernels/README.md`.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:  # as a script, ./triton.py would shadow the triton package
    sys.exit("run this as a module from the repository root: python -m kernels.attention.tune")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import importlib.metadata  # noqa: E402
import itertools  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import date  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from kernels import launch_table  # noqa: E402
from kernels.attention import launch_config as lc  # noqa: E402
from kernels.attention import triton as fa  # noqa: E402
from kernels.attention import triton_kernels  # noqa: E402

SHARED_MEMORY_LIMIT = {80: 166912, 86: 101376, 89: 101376, 90: 232448}  # bytes per block (opt-in maximum)

FWD_GRID = dict(block_m=(64, 128), block_n=(32, 64, 128), num_warps=(4, 8), num_stages=(2, 3, 4))
DKV_GRID = dict(block_m=(16, 32, 64), block_n=(32, 64, 128), num_warps=(4, 8), num_stages=(2, 3, 5))
DQ_GRID = dict(block_m=(32, 64, 128), block_n=(16, 32, 64), num_warps=(4, 8), num_stages=(2, 3, 5))
QUICK = dict(num_stages=(3,))


# ---------------------------------------------------------------------------------------------------------------
# Table I/O
# ---------------------------------------------------------------------------------------------------------------


def versions() -> str:
    parts = [f"jax {jax.__version__}"]
    for dist in ("jaxlib", "triton", "jax-triton"):
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(parts) + f", python {platform.python_version()}"


# ---------------------------------------------------------------------------------------------------------------
# Offline compilation (no GPU): resource usage of a configuration
# ---------------------------------------------------------------------------------------------------------------


def compile_offline(
    kernel: str,
    config: lc.KernelConfig,
    *,
    head_dim: int,
    dtype: str = "bfloat16",
    causal: bool = False,
    window: tuple[int, int] | None = None,
    segments: bool = False,
    q_heads: int = 16,
    kv_heads: int = 16,
    arch: int = 90,
) -> dict[str, Any]:
    """Compile one kernel (`"fwd"`, `"bwd_dkv"`, `"bwd_dq"`) for sm_`arch` without a GPU; its resource usage.

    Returns registers per thread, `stack` (spill) bytes, `spill_loads`/`spill_stores` (LDL/STL instructions),
    `shared` memory bytes, and the counts of `hgmma` (Hopper warpgroup MMA) and `hmma` (mma.sync) instructions.
    Needs Triton's NVIDIA backend (its bundled ptxas and cuobjdump), not a GPU.
    """
    ptr = "*" + launch_table.triton_type(dtype)
    fn, operands = {
        "fwd": (triton_kernels._fwd_kernel, dict(
            Q=ptr, K=ptr, V=ptr, QSEG="*i32", KVSEG="*i32", qk_scale="fp32", q_len="i32", kv_len="i32", Out=ptr,
            LSE="*fp32")),
        "bwd_dkv": (triton_kernels._dkv_kernel, dict(
            Q=ptr, K=ptr, V=ptr, DO=ptr, LSE="*fp32", DELTA="*fp32", QSEG="*i32", KVSEG="*i32", scale="fp32",
            qk_scale="fp32", q_len="i32", kv_len="i32", DK=ptr, DV=ptr)),
        "bwd_dq": (triton_kernels._dq_kernel, dict(
            Q=ptr, K=ptr, V=ptr, DO=ptr, LSE="*fp32", DELTA="*fp32", QSEG="*i32", KVSEG="*i32", scale="fp32",
            qk_scale="fp32", q_len="i32", kv_len="i32", DQ=ptr)),
    }[kernel]  # fmt: skip
    left, right = (-1, -1) if window is None else window
    constexprs = dict(
        HQ=q_heads, HKV=kv_heads, D=head_dim, BLOCK_M=config.block_m, BLOCK_N=config.block_n, CAUSAL=causal,
        LEFT=left, RIGHT=right, HAS_SEG=segments, PRECISION="ieee" if dtype == "float32" else "tf32",
    )  # fmt: skip
    compiled = launch_table.compile_for_gpu(
        fn,
        operands,
        constexprs,
        num_warps=config.num_warps,
        num_stages=config.num_stages,
        arch=arch,
        divisible=[n for n, t in operands.items() if t.startswith("*")],  # JAX's buffers are 16-byte aligned
    )
    cuobjdump = str(launch_table.nvidia_tools_dir() / "cuobjdump")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(compiled.asm["cubin"])
        usage = subprocess.run([cuobjdump, "-res-usage", path], capture_output=True, text=True)
        sass = subprocess.run([cuobjdump, "-sass", path], capture_output=True, text=True).stdout
    match = re.search(r"REG:(\d+) STACK:(\d+)", usage.stdout)
    if match is None:
        raise RuntimeError(f"cuobjdump -res-usage gave no resource line: {usage.stdout[:300]} {usage.stderr[:300]}")
    return dict(
        registers=int(match.group(1)),
        stack=int(match.group(2)),
        spill_loads=len(re.findall(r"\bLDL\b", sass)),
        spill_stores=len(re.findall(r"\bSTL\b", sass)),
        shared=int(compiled.metadata.shared),
        hgmma=len(re.findall(r"\bHGMMA\b", sass)),
        hmma=len(re.findall(r"\bHMMA\b", sass)),
    )


def compile_report(table: dict[str, Any], arch: int) -> int:
    """Print the offline resource usage of every configuration in the table; 1 if any spills or overflows."""
    rows = [("defaults." + name, entry) for name, entry in table.get("defaults", {}).items() if name != "interpret"]
    rows += [(f"entries[{i}]", e) for i, e in enumerate(table["entries"])]
    limit = SHARED_MEMORY_LIMIT.get(arch)
    bad = 0
    print(f"offline compile for sm_{arch} ({versions()}); shared memory limit {limit} bytes")
    print(f"{'entry':13s} {'D':>3s} {'dtype':8s} {'kernel':7s} {'config':16s} {'regs':>4s} {'stack':>5s} "
          f"{'shared':>7s} {'HGMMA':>5s} {'HMMA':>5s}  note")  # fmt: skip
    for where, entry in rows:
        dims = entry.get("head_dim", "*")
        dtype = entry.get("dtype", "*")
        dtype = dtype[0] if isinstance(dtype, list) else "bfloat16" if dtype == "*" else dtype
        causal = entry.get("causal", "*") is not False
        device = entry.get("device", "*")
        device = device[0] if isinstance(device, list) else device
        device = "some other GPU" if device in ("*", "gpu") else device
        this = lc.LaunchConfig.from_json(entry, where)
        for head_dim in dims if isinstance(dims, list) else [dims] if isinstance(dims, int) else [16, 32, 64, 128, 256]:
            used = lc.lookup_config(
                head_dim=head_dim, causal=causal, dtype=dtype, q_len=4096, kv_len=4096, device=device, table=table
            )
            if used != this:  # a more specific entry serves this head dim
                continue
            for kernel in lc.KERNELS:
                cfg = lc.KernelConfig.from_json(entry[kernel], f"{where}.{kernel}")
                try:
                    r = compile_offline(kernel, cfg, head_dim=head_dim, dtype=dtype, causal=causal, arch=arch)
                except Exception as e:  # noqa: BLE001 - reported
                    print(f"{where:13s} {head_dim:3d} {dtype:8s} {kernel:7s} FAILED {type(e).__name__}: {e}")
                    bad += 1
                    continue
                notes = []
                if r["stack"] or r["spill_stores"]:
                    notes.append("SPILLS")
                if limit and r["shared"] > limit:
                    notes.append("SHARED MEMORY OVER LIMIT")
                bad += bool(notes)
                c = f"{cfg.block_m}x{cfg.block_n} w{cfg.num_warps} s{cfg.num_stages}"
                numbers = f"{r['registers']:4d} {r['stack']:5d} {r['shared']:7d} {r['hgmma']:5d} {r['hmma']:5d}"
                print(f"{where:13s} {head_dim:3d} {dtype:8s} {kernel:7s} {c:16s} {numbers}  {' '.join(notes)}")
    return 1 if bad else 0


# ---------------------------------------------------------------------------------------------------------------
# Timing on a GPU
# ---------------------------------------------------------------------------------------------------------------


def _configs(grid: dict[str, tuple[int, ...]], quick: bool) -> list[lc.KernelConfig]:
    grid = {**grid, **(QUICK if quick else {})}
    keys = ("block_m", "block_n", "num_warps", "num_stages")
    return [
        lc.KernelConfig(**dict(zip(keys, values, strict=True)))
        for values in itertools.product(*(grid[k] for k in keys))
    ]


def _median_seconds(fn, input_sets: list[tuple], repeats: int, warmup: int = 2) -> float:
    """Median seconds of fn(*inputs), rotating through input_sets; every call synchronized."""
    n = len(input_sets)
    for i in range(warmup):
        jax.block_until_ready(fn(*input_sets[i % n]))
    times = []
    for i in range(repeats):
        args = input_sets[(warmup + i) % n]
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _input_sets(n: int, batch: int, seq: int, heads: int, head_dim: int, dtype) -> list[tuple]:
    sets = []
    for i in range(n):
        keys = jax.random.split(jax.random.key(1234 + i), 4)
        shape = (batch, seq, heads, head_dim)
        q, k, v, do = (jax.random.normal(key, shape, jnp.float32).astype(dtype) for key in keys)
        sets.append((q, k, v, do))
    return jax.block_until_ready(sets)


def _sweep(
    label: str, make_fn, configs: list[lc.KernelConfig], input_sets, repeats: int
) -> tuple[lc.KernelConfig, float]:
    best, best_t = None, float("inf")
    for cfg in configs:
        try:
            t = _median_seconds(make_fn(cfg), input_sets, repeats)
        except Exception as e:  # noqa: BLE001 - compile/launch failures are expected for some configs
            print(f"    {label} {cfg}: skipped ({type(e).__name__}: {str(e).splitlines()[0][:120]})", flush=True)
            continue
        print(
            f"    {label} {cfg.block_m}x{cfg.block_n} w{cfg.num_warps} s{cfg.num_stages}: {t * 1e3:.3f} ms", flush=True
        )
        if t < best_t:
            best, best_t = cfg, t
    if best is None:
        raise RuntimeError(f"{label}: no configuration compiled and ran")
    return best, best_t


def tune_class(*, head_dim: int, causal: bool, dtype: str, seq: int, tokens: int, heads: int, repeats: int,
               input_sets: int, quick: bool, backend: str = "gpu",
               grids: dict[str, list[lc.KernelConfig]] | None = None,
               table: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Sweep the three kernels for one shape class; the table entry for it.

    `backend="interpret"` and small `grids` (`{"fwd": [...], "bwd_dkv": [...], "bwd_dq": [...]}`) exercise this
    code on a CPU (the tests do); the times are then meaningless.
    """
    grids = grids or {}
    batch = max(1, tokens // seq)
    sets = _input_sets(input_sets, batch, seq, heads, head_dim, jnp.dtype(dtype))
    device_key = launch_table.device_key(backend)
    base = lc.lookup_config(
        head_dim=head_dim, causal=causal, dtype=dtype, q_len=seq, kv_len=seq, device=device_key, table=table
    )
    scale = 1.0 / np.sqrt(head_dim)

    def spec(config: lc.LaunchConfig):
        return fa._Spec(causal=causal, left=-1, right=-1, scale=float(scale), config=config, backend=backend)

    print(f"  class D={head_dim} causal={causal} {dtype} seq={seq}: B={batch} H={heads}", flush=True)

    def make_fwd(cfg):
        s = spec(dataclasses.replace(base, fwd=cfg))
        return jax.jit(lambda q, k, v, do: fa._forward(q, k, v, None, None, s)[0])

    fwd, fwd_t = _sweep("fwd", make_fwd, grids.get("fwd") or _configs(FWD_GRID, quick), sets, repeats)
    s0 = spec(dataclasses.replace(base, fwd=fwd))
    residuals = []
    for q, k, v, do in sets:  # O, LSE and delta once per input set
        o, lse = jax.jit(lambda q, k, v: fa._forward(q, k, v, None, None, s0))(q, k, v)
        delta = jax.jit(lambda o, do: fa._delta(o, do, s0))(o, do)
        residuals.append((q, k, v, do, lse, delta))
    residuals = jax.block_until_ready(residuals)

    def make_dkv(cfg):
        s = spec(dataclasses.replace(base, bwd_dkv=cfg))
        return jax.jit(lambda q, k, v, do, lse, delta: fa._backward_dkv(q, k, v, do, lse, delta, None, None, s))

    def make_dq(cfg):
        s = spec(dataclasses.replace(base, bwd_dq=cfg))
        return jax.jit(lambda q, k, v, do, lse, delta: fa._backward_dq(q, k, v, do, lse, delta, None, None, s))

    dkv, dkv_t = _sweep("bwd_dkv", make_dkv, grids.get("bwd_dkv") or _configs(DKV_GRID, quick), residuals, repeats)
    dq, dq_t = _sweep("bwd_dq", make_dq, grids.get("bwd_dq") or _configs(DQ_GRID, quick), residuals, repeats)
    device = jax.devices()[0].device_kind
    return {
        "device": [device_key],
        "head_dim": head_dim,
        "causal": causal,
        "dtype": dtype,
        "seq": lc.seq_bucket(seq, seq, table),
        "fwd": fwd.to_json(),
        "bwd_dkv": dkv.to_json(),
        "bwd_dq": dq.to_json(),
        "source": f"measured by kernels/attention/tune.py on {device}, {date.today().isoformat()} ({versions()})",
        "measured": {"shape_bshd": [batch, seq, heads, head_dim], "fwd_ms": round(fwd_t * 1e3, 4),
                     "bwd_dkv_ms": round(dkv_t * 1e3, 4), "bwd_dq_ms": round(dq_t * 1e3, 4), "repeats": repeats},
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head-dims", default="64,128", help="comma-separated head dims (64,128,256)")
    parser.add_argument("--dtypes", default="bfloat16", help="comma-separated: bfloat16,float16,float32")
    parser.add_argument("--causal", default="both", choices=("both", "true", "false"))
    parser.add_argument("--seqs", default="1024,4096", help="sequence lengths, one per bucket to tune")
    parser.add_argument("--tokens", type=int, default=32768, help="batch * seq of the timed shapes")
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--input-sets", type=int, default=3, help="distinct random input sets, rotated")
    parser.add_argument("--quick", action="store_true", help="one pipeline depth only (a third of the grid)")
    parser.add_argument("--table", default=str(lc.TABLE_PATH), help="the table to read and rewrite")
    parser.add_argument("--dry-run", action="store_true", help="print the new entries, leave the table unchanged")
    parser.add_argument("--compile-report", action="store_true", help="offline ptxas resource report, no GPU")
    parser.add_argument("--arch", type=int, default=90, help="compute capability for --compile-report (90 = H100)")
    args = parser.parse_args(argv)
    table = lc.load_table(args.table)

    if args.compile_report:
        return compile_report(table, args.arch)

    if jax.default_backend() != "gpu":
        print(
            f"tune.py times the Triton kernels on a GPU, but JAX's default backend here is "
            f"'{jax.default_backend()}'. Nothing was measured and {args.table} is unchanged. Run it on a GPU machine "
            "with the [gpu] extra installed (jax-triton); `--compile-report` works without one."
        )
        return 2

    causals = {"both": [False, True], "true": [True], "false": [False]}[args.causal]
    print(f"tuning on {jax.devices()[0].device_kind} ({versions()})", flush=True)
    entries = []
    for head_dim, dtype, causal, seq in itertools.product(
        _ints(args.head_dims), args.dtypes.split(","), causals, _ints(args.seqs)
    ):
        entries.append(
            tune_class(head_dim=head_dim, causal=causal, dtype=dtype, seq=seq, tokens=args.tokens, heads=args.heads,
                       repeats=args.repeats, input_sets=args.input_sets, quick=args.quick, table=table)
        )  # fmt: skip
        if not args.dry_run:  # after every class, so an interrupted sweep keeps what it measured
            with open(args.table, "w") as f:
                f.write(launch_table.format_table(launch_table.merge_measured(table, entries, lc.CLASS_FIELDS)))
            print(f"wrote {len(entries)} measured entries to {args.table}", flush=True)
    if args.dry_run:
        print(launch_table.format_table({"entries": entries}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
