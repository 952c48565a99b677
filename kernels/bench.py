"""Kernel microbenchmarks: `python -m kernels.bench <op> [--out DIR] [--quick]` -> markdown table + JSON.

Ops: `int8_matmul` (TOP/s and weight GB/s of our W8A8 / W8A16 / W4A16 kernels vs XLA's bf16 dot, XLA's int8 dot
and XLA's convert-then-dot W8A16, on 8192³, 16384×4096×4096, 4096³ and decode shapes M ∈ {1, 16, 64} × 8192²);
`attention` (TFLOP/s of our Triton and Pallas kernels vs `jax.nn.dot_product_attention` cuDNN and XLA and
jax's own Pallas GPU `mha`, forward and forward+backward, causal and not). FLOPs: 4·B·H·S²·D forward (halved for
causal), ×3.5 for forward+backward. Method (see ../.library/device/METHOD.md): every implementation is jitted once,
warmed up, then timed as the median of `--repeats` calls, each on fresh random inputs (never zeros) and each
synchronized with `block_until_ready`. An implementation that fails on a shape is reported with its error, not
dropped. On a machine without a GPU, `--quick` runs tiny shapes so the script itself is exercised.
"""

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import date

import jax
import jax.numpy as jnp
import numpy as np

ATTENTION_SHAPES = [  # (batch, seq, q heads, kv heads, head_dim)
    (4, 4096, 16, 16, 128),
    (16, 1024, 16, 16, 64),
    (1, 16384, 16, 16, 128),
    (8, 2048, 32, 8, 128),
]
QUICK_SHAPES = [(1, 256, 2, 2, 64), (1, 256, 4, 2, 64)]


def time_fn(fn: Callable, make_inputs: Callable[[int], tuple], repeats: int, warmup: int = 2) -> float:
    """Median seconds of fn(*make_inputs(i)) over `repeats` calls after `warmup`; inputs made and synced first."""
    for i in range(warmup):
        jax.block_until_ready(fn(*make_inputs(i)))
    times = []
    for i in range(repeats):
        args = jax.block_until_ready(make_inputs(warmup + i))
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def versions() -> dict:
    out = {"jax": jax.__version__, "python": platform.python_version(), "date": date.today().isoformat()}
    for mod in ("jaxlib", "triton", "jax_triton"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # not installed here
            pass
    d = jax.devices()[0]
    out["device"] = f"{d.device_kind} ({d.platform})"
    return out


# ------------------------------------------------------------------------------------------- attention
def attention_impls() -> dict[str, Callable]:
    """name -> f(q, k, v, causal) for every implementation that exists on this platform."""
    from kernels.attention import api

    impls = {
        "ours triton": lambda q, k, v, c: api.attention(q, k, v, causal=c, impl="triton"),
        "ours pallas": lambda q, k, v, c: api.attention(q, k, v, causal=c, impl="pallas"),
        "xla": lambda q, k, v, c: jax.nn.dot_product_attention(q, k, v, is_causal=c, implementation="xla"),
    }
    if jax.default_backend() == "gpu":
        impls["cudnn"] = lambda q, k, v, c: jax.nn.dot_product_attention(q, k, v, is_causal=c, implementation="cudnn")
        try:
            from jax.experimental.pallas.ops.gpu import attention as jax_pallas

            def jax_mha(q, k, v, c):
                if q.shape[2] != k.shape[2]:  # jax's op has no GQA: repeat kv heads
                    rep = q.shape[2] // k.shape[2]
                    k, v = jnp.repeat(k, rep, axis=2), jnp.repeat(v, rep, axis=2)
                return jax_pallas.mha(q, k, v, segment_ids=None, causal=c)

            impls["jax pallas mha"] = jax_mha
        except Exception as e:  # noqa: BLE001 - reported in the table
            impls["jax pallas mha"] = f"unavailable: {type(e).__name__}: {e}"
    return impls


def bench_attention(shapes, repeats: int, dtype, emit: Callable[[list[dict]], None] = print) -> list[dict]:
    """Rows of the attention table; `emit(rows)` after each row (the script rewrites its files: an interrupted run
    keeps what it measured)."""
    rows = []
    for b, s, hq, hkv, d in shapes:
        for causal in (False, True):
            flops = 4 * b * hq * s * s * d * (0.5 if causal else 1.0)

            def make_inputs(i, b=b, s=s, hq=hq, hkv=hkv, d=d):
                kq, kk, kv = jax.random.split(jax.random.key(i), 3)
                return (
                    jax.random.normal(kq, (b, s, hq, d), dtype),
                    jax.random.normal(kk, (b, s, hkv, d), dtype),
                    jax.random.normal(kv, (b, s, hkv, d), dtype),
                )

            for name, f in attention_impls().items():
                row = dict(shape=f"B{b} S{s} H{hq}/{hkv} D{d}", causal=causal, impl=name)
                if isinstance(f, str):
                    rows.append(dict(row, error=f))
                    continue
                fwd = jax.jit(lambda q, k, v, f=f, c=causal: f(q, k, v, c))

                def loss(q, k, v, f=f, c=causal):
                    return jnp.sum(f(q, k, v, c).astype(jnp.float32))

                fwd_bwd = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
                try:
                    t_f = time_fn(fwd, make_inputs, repeats)
                    t_fb = time_fn(fwd_bwd, make_inputs, repeats)
                    rows.append(
                        dict(
                            row,
                            fwd_ms=1e3 * t_f,
                            fwd_tflops=flops / t_f / 1e12,
                            fwd_bwd_ms=1e3 * t_fb,
                            fwd_bwd_tflops=3.5 * flops / t_fb / 1e12,
                        )
                    )
                except Exception as e:  # noqa: BLE001 - an impl that fails on a shape is reported, not dropped
                    rows.append(dict(row, error=f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"))
                emit(rows)
    return rows


def attention_markdown(rows: list[dict]) -> str:
    lines = [
        "| shape | causal | impl | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['shape']} | {r['causal']} | {r['impl']} | — | — | — | {r['error']} |")
        else:
            lines.append(
                f"| {r['shape']} | {r['causal']} | {r['impl']} | {r['fwd_ms']:.3f} | {r['fwd_tflops']:.1f} | "
                f"{r['fwd_bwd_ms']:.3f} | {r['fwd_bwd_tflops']:.1f} |"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- int8 matmul
MATMUL_SHAPES = [(8192, 8192, 8192), (16384, 4096, 4096), (4096, 4096, 4096), (1, 8192, 8192), (16, 8192, 8192),
                 (64, 8192, 8192)]  # (M, K, N); the last three are decode shapes  # fmt: skip
QUICK_MATMUL_SHAPES = [(64, 256, 128), (1, 256, 128)]


def matmul_impls() -> dict[str, tuple[str, Callable]]:
    """name -> (weight format, f(x_bf16, weights...)); weight formats: bf16 | int8 | int4."""
    from kernels.int8_matmul import api, reference

    int8_dot = lambda x, w_q, s: reference.w8a8(*reference.quantize_per_token(x), w_q, s, out_dtype=jnp.bfloat16)
    impls = {
        "xla bf16 dot": ("bf16", lambda x, w: jnp.dot(x, w, preferred_element_type=jnp.bfloat16)),
        "xla int8 dot (W8A8)": ("int8", int8_dot),
        "xla W8A16 (convert, dot)": ("int8", lambda x, w_q, s: reference.w8a16(x, w_q, s)),
        "ours W8A8 triton": ("int8", lambda x, w_q, s: api.w8a8_matmul(x, w_q, s, impl="triton")),
        "ours W8A16 triton": ("int8", lambda x, w_q, s: api.w8a16_matmul(x, w_q, s, impl="triton")),
        "ours W4A16 triton": ("int4", lambda x, w, s: api.w4a16_matmul(x, w, s, group_size=128, impl="triton")),
        "ours W8A8 pallas": ("int8", lambda x, w_q, s: api.w8a8_matmul(x, w_q, s, impl="pallas")),
    }
    return impls


def bench_matmul(shapes, repeats: int, emit: Callable[[list[dict]], None] = print) -> list[dict]:
    """Rows of the matmul table; `emit(rows)` after each row, as in :func:`bench_attention`."""
    from kernels.int8_matmul import reference

    rows = []
    for m, k, n in shapes:
        w = jax.random.normal(jax.random.key(1), (k, n), jnp.float32) / np.sqrt(k)
        weights = {
            "bf16": (w.astype(jnp.bfloat16),),
            "int8": reference.quantize_per_channel(w),
            "int4": reference.quantize_int4(w, 128),
        }
        for name, (fmt, f) in matmul_impls().items():
            row = dict(shape=f"{m}x{k}x{n}", impl=name)
            fn = jax.jit(f)
            make_inputs = lambda i, m=m, k=k, fmt=fmt, weights=weights: (
                jax.random.normal(jax.random.key(100 + i), (m, k), jnp.bfloat16),
                *weights[fmt],
            )
            try:
                t = time_fn(fn, make_inputs, repeats)
                w_bytes = sum(a.nbytes for a in weights[fmt])
                rows.append(dict(row, ms=1e3 * t, tops=2 * m * k * n / t / 1e12, weight_gbs=w_bytes / t / 1e9))
            except Exception as e:  # noqa: BLE001 - reported in the table
                rows.append(dict(row, error=f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"))
            emit(rows)
    return rows


def matmul_markdown(rows: list[dict]) -> str:
    lines = ["| shape (MxKxN) | impl | ms | TOP/s (TFLOP/s) | weight GB/s |", "|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['shape']} | {r['impl']} | — | — | {r['error']} |")
        else:
            lines.append(f"| {r['shape']} | {r['impl']} | {r['ms']:.3f} | {r['tops']:.1f} | {r['weight_gbs']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("op", choices=["attention", "int8_matmul"])
    parser.add_argument("--out", default=os.environ.get("OUT", "bench_out"), help="directory for the .md/.json")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="tiny shapes (CPU smoke run)")
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    dtype = jnp.dtype(args.dtype)
    info = versions()
    header = ", ".join(f"{k} {v}" for k, v in info.items())
    title = f"`python -m kernels.bench {args.op}{' --quick' if args.quick else ''}` ({args.dtype}; {header})\n\n"
    to_markdown = attention_markdown if args.op == "attention" else matmul_markdown
    os.makedirs(args.out, exist_ok=True)

    def emit(rows: list[dict]) -> None:  # rewrite both files after every row
        print(rows[-1], flush=True)
        with open(os.path.join(args.out, f"{args.op}.md"), "w") as f:
            f.write(title + to_markdown(rows) + "\n")
        with open(os.path.join(args.out, f"{args.op}.json"), "w") as f:
            json.dump({"info": info, "dtype": args.dtype, "rows": rows}, f, indent=1)

    if args.op == "attention":
        rows = bench_attention(QUICK_SHAPES if args.quick else ATTENTION_SHAPES, args.repeats, dtype, emit)
    else:
        rows = bench_matmul(QUICK_MATMUL_SHAPES if args.quick else MATMUL_SHAPES, args.repeats, emit)
    print(title + to_markdown(rows))


if __name__ == "__main__":
    main()
