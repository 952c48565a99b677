"""Lower every Triton kernel for CUDA through the installed jax-triton and Triton, without a GPU.

    JAX_PLATFORMS=cpu python -m kernels.check_gpu_lowering [--device H100]

Real: our `triton_call` binding, jax-triton's primitive and lowering (0.3.x or 0.4.x), Triton compiling each kernel
for sm_90 with its bundled ptxas, JAX lowering to StableHLO custom calls. Stubbed: jaxlib's GPU-only `gpu_triton`
extension (absent from a CPU jaxlib), replaced by recorders of what jax-triton hands it (kernel name, warps, shared
memory, PTX, scalar parameter types). `--device` looks the launch tables up as on that GPU model. Exit status 1 when
a kernel gets an fp64 scalar, spills to local memory or no custom call is emitted.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

RECORDED: dict[str, list] = {"kernels": [], "scalars": []}


def _stub_gpu_triton() -> None:
    """Give a CPU jaxlib's `gpu_triton` module the attributes jax-triton uses, as recorders."""
    import jax._src.lib as jaxlib_lib

    class TritonKernel:
        def __init__(self, name, num_warps, num_ctas, shared, binary, ttir, capability):
            RECORDED["kernels"].append(dict(name=name, warps=num_warps, shared=shared, binary=binary))

    class TritonKernelCall:
        def __init__(self, *args, **kwargs):
            pass

        def to_proto(self, *args) -> bytes:
            return b"recorded"

    def scalar(value, dtype):
        RECORDED["scalars"].append((type(value).__name__, dtype))

    stubs = dict(
        get_compute_capability=lambda device: 90,
        get_serialized_metadata=lambda *args: b"",
        get_arch_details=lambda device: "90",
        TritonKernel=TritonKernel,
        TritonKernelCall=TritonKernelCall,
        TritonAutotunedKernelCall=TritonKernelCall,
        create_array_parameter=lambda *args: None,
        create_scalar_parameter=scalar,
    )
    for name, value in stubs.items():
        setattr(jaxlib_lib.gpu_triton, name, value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="H100", help="GPU model whose launch-table entries to compile")
    args = parser.parse_args(argv)

    import jax

    if jax.default_backend() == "gpu":
        print("a GPU is visible: run the real thing instead (JAXDL_TEST_BACKEND=gpu bash launch/test.sh)")
        return 2
    _stub_gpu_triton()
    import importlib.metadata

    import jax.numpy as jnp
    import jax_triton  # noqa: F401  (imports only with the stub on a CPU jaxlib)

    from kernels.attention import launch_config as attention_configs
    from kernels.attention import triton as fa
    from kernels.int8_matmul import launch_config as matmul_configs
    from kernels.int8_matmul import triton as tk

    for module in (attention_configs, matmul_configs):
        module.device_key = lambda backend="auto": args.device
    versions = {d: importlib.metadata.version(d) for d in ("jax", "jaxlib", "triton", "jax-triton")}
    print(", ".join(f"{k} {v}" for k, v in versions.items()) + f"; tables looked up as on {args.device}")

    S = jax.ShapeDtypeStruct
    cases: list[tuple[str, Any, tuple]] = []
    for dtype in (jnp.bfloat16, jnp.float32):
        for causal in (False, True):
            loss = lambda q, k, v, c=causal: jnp.sum(fa.attention(q, k, v, causal=c, backend="gpu").astype(jnp.float32))
            shapes = (S((2, 1000, 8, 128), dtype), S((2, 1000, 2, 128), dtype), S((2, 1000, 2, 128), dtype))
            name = f"attention {jnp.dtype(dtype).name} D128 GQA causal={causal} fwd+bwd"
            cases.append((name, jax.grad(loss, argnums=(0, 1, 2)), shapes))
    seg = S((1, 512), jnp.int32)
    windowed = lambda q, k, v, a, b: fa.attention(
        q, k, v, causal=True, window=(64, None), q_segment_ids=a, kv_segment_ids=b, backend="gpu"
    )
    cases.append(
        ("attention bf16 D64 window+segments fwd", windowed, (S((1, 512, 4, 64), jnp.bfloat16),) * 3 + (seg,) * 2)
    )
    for m in (16, 512):
        w, ws = S((4096, 4096), jnp.int8), S((1, 4096), jnp.float32)
        x8, xs, xb = S((m, 4096), jnp.int8), S((m, 1), jnp.float32), S((m, 4096), jnp.bfloat16)
        wp, sc = S((2048, 4096), jnp.uint8), S((32, 4096), jnp.float32)
        cases.append(
            (f"w8a8 m={m}", lambda a, b, c, d: tk.w8a8(a, b, c, d, jnp.bfloat16, backend="gpu"), (x8, xs, w, ws))
        )
        cases.append((f"w8a16 m={m}", lambda a, c, d: tk.w8a16(a, c, d, backend="gpu"), (xb, w, ws)))
        cases.append((f"w4a16 m={m}", lambda a, c, d: tk.w4a16(a, c, d, 128, backend="gpu"), (xb, wp, sc)))

    bad = 0
    for name, fn, shapes in cases:
        before = len(RECORDED["kernels"])
        text = jax.jit(fn).trace(*shapes).lower(lowering_platforms=("cuda",)).as_text()
        calls = text.count("triton_kernel_call")
        print(f"{name}: {calls} custom call(s)")
        bad += calls == 0
        for k in RECORDED["kernels"][before:]:
            ptx = k["binary"].decode() if isinstance(k["binary"], bytes) else str(k["binary"])
            local = ".local" in ptx
            bad += local
            mma = "wgmma" if "wgmma.mma_async" in ptx else "mma.sync" if "mma.sync" in ptx else "fma"
            print(
                f"    {k['name']:16s} warps {k['warps']}  shared {k['shared']:6d} B  {mma}{'  LOCAL MEMORY' if local else ''}"
            )
    fp64 = [s for s in RECORDED["scalars"] if s[1] == "fp64"]
    print(f"scalar parameters (Python type, Triton type): {sorted(set(RECORDED['scalars']))}")
    if fp64:
        print("FAIL: a float scalar reaches a kernel as fp64")
    return 1 if bad or fp64 else 0


if __name__ == "__main__":
    sys.exit(main())
