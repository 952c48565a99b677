"""Where LeNet-5's train step spends its time, op by op, in JAX (XLA:CPU) and in PyTorch: the same file runs under
either interpreter and times each convolution's forward, its input gradient and its weight gradient on LeNet's
shapes (batch 256, fp32), plus the whole forward+backward+AdamW step.

  python experiments/cpu_perf/conv_ops.py --framework=jax  [--layout=NHWC|NCHW|im2col]     # project venv
  /tmp/peer_venv/bin/python experiments/cpu_perf/conv_ops.py --framework=torch        # side venv (README.md)

`--layout=im2col`: the same NHWC convolution written as k·k shifted slices of the padded input stacked into patches
[b, h', w', k·k·cin] and one matmul with the HWIO kernel reshaped to [k·k·cin, cout] (its gradients are what
autodiff makes of slices and a dot); checked equal to `lax.conv_general_dilated` before timing.

Prints one JSON line {op: median ms over --steps runs after 3 warm-up runs, "framework": ..., "xla_flags": ...}.
"""

import argparse
import json
import os
import time

# (name, batch, height/width, in channels, out channels, kernel, padding): LeNet-5's two convolutions
CONVS = [("conv1", 256, 28, 1, 6, 5, 2), ("conv2", 256, 14, 6, 16, 5, 0)]


def median_ms(fn, steps: int, sync) -> float:
    times = []
    for i in range(3 + steps):
        t0 = time.perf_counter()
        sync(fn())
        if i >= 3:
            times.append(time.perf_counter() - t0)
    times.sort()
    return 1e3 * times[len(times) // 2]


def _jax_conv(name, b, hw, cin, cout, k, pad, layout, steps) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    nchw = layout == "NCHW"
    dn = ("NCHW", "OIHW", "NCHW") if nchw else ("NHWC", "HWIO", "NHWC")
    xs = (b, cin, hw, hw) if nchw else (b, hw, hw, cin)
    ws = (cout, cin, k, k) if nchw else (k, k, cin, cout)
    x, w = jnp.asarray(rng.standard_normal(xs, np.float32)), jnp.asarray(rng.standard_normal(ws, np.float32))

    def lax_conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), [(pad, pad)] * 2, dimension_numbers=dn)

    def im2col_conv(x, w):
        xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        ho = xp.shape[1] - k + 1
        patches = jnp.concatenate([xp[:, i : i + ho, j : j + ho, :] for i in range(k) for j in range(k)], axis=-1)
        return patches @ w.reshape(k * k * cin, cout)

    conv = im2col_conv if layout == "im2col" else lax_conv
    if layout == "im2col":
        np.testing.assert_allclose(im2col_conv(x, w), lax_conv(x, w), rtol=1e-4, atol=1e-3)

    g = jnp.ones_like(conv(x, w))
    fwd = jax.jit(conv)
    dx = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0])
    dw = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])
    sync = jax.block_until_ready
    return {
        f"{name}_forward": median_ms(lambda: fwd(x, w), steps, sync),
        f"{name}_grad_input": median_ms(lambda: dx(x, w, g), steps, sync),
        f"{name}_grad_weight": median_ms(lambda: dw(x, w, g), steps, sync),
    }


def _torch_conv(name, b, hw, cin, cout, k, pad, steps) -> dict:
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(b, cin, hw, hw, generator=gen), torch.randn(cout, cin, k, k, generator=gen)
    gy = torch.ones_like(F.conv2d(x, w, padding=pad))
    same = lambda r: r  # eager torch returns when the op is done
    return {
        f"{name}_forward": median_ms(lambda: F.conv2d(x, w, padding=pad), steps, same),
        f"{name}_grad_input": median_ms(lambda: torch.nn.grad.conv2d_input(x.shape, w, gy, padding=pad), steps, same),
        f"{name}_grad_weight": median_ms(lambda: torch.nn.grad.conv2d_weight(x, w.shape, gy, padding=pad), steps, same),
    }


def run_jax(steps: int, layout: str) -> dict:
    import jax

    out = {}
    for conv in CONVS:
        out |= _jax_conv(*conv, layout, steps)
    return out | {"xla_flags": os.environ.get("XLA_FLAGS", ""), "jax": jax.__version__}


def run_torch(steps: int) -> dict:
    import torch

    out = {}
    for conv in CONVS:
        out |= _torch_conv(*conv, steps)
    return out | {"torch": torch.__version__, "threads": torch.get_num_threads()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--framework", choices=("jax", "torch"), required=True)
    p.add_argument("--layout", choices=("NHWC", "NCHW", "im2col"), default="NHWC")
    p.add_argument("--steps", type=int, default=20)
    a = p.parse_args()
    out = run_jax(a.steps, a.layout) if a.framework == "jax" else run_torch(a.steps)
    out["framework"] = a.framework + (f" {a.layout}" if a.framework == "jax" else "")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
