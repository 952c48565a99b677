"""Batch-256 forward latency of the Fashion-MNIST VGG (widths 32/64/128) beside narrower VGGs, all called round-robin
in one process (every model sees the same load on the shared cores), so width triples measured in different runs
(prune_conv_study.py, conv_study.py) can be compared under one load. Latency does not depend on the weights' values
(dense convolutions and matmuls), so the models are freshly initialized (seed 0); compile excluded (3 warm-up calls).

    python experiments/deploy/prune_latency.py --out=experiments/deploy/prune_latency.json
    python experiments/deploy/prune_latency.py --out=/tmp/lat_1thread.json --threads=1

--threads=1 pins XLA:CPU to one intra-op thread (set before jax is imported), a measurement less exposed to how
many cores the other jobs leave free. Runtime: ~1-3 min on the shared 2 cores.
"""

import json
import os
import sys
import time

THREADS = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), "0")
if THREADS != "0":  # must precede the jax import
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + f" --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={int(THREADS)}"
    )

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from flax import nnx  # noqa: E402

from jaxdl import models  # noqa: E402
from jaxdl.metrics import environment  # noqa: E402

flags.DEFINE_string("out", "experiments/deploy/prune_latency.json", "results JSON")
flags.DEFINE_list(
    "widths", ["32-64-128", "32-32-64", "16-32-64", "20-40-80", "24-48-96"], "width triples (first: base)"
)
flags.DEFINE_integer("repeats", 40, "round-robin rounds (one timed call of every model per round)")
flags.DEFINE_integer("batch", 256, "images per call")
flags.DEFINE_integer("threads", 0, "XLA:CPU intra-op threads (0: XLA's default)")
FLAGS = flags.FLAGS


def forward(widths):
    cfg = {"name": "vgg", "widths": widths, "convs": 1, "hidden": 256, "norm": "none"}
    with nnx.use_eager_sharding(False):
        g, p, r = nnx.split(models.make(cfg, input_shape=(28, 28, 1), num_classes=10, rngs=nnx.Rngs(0)), nnx.Param, ...)
    f = jax.jit(lambda p, x: nnx.merge(g, p, r)(x, train=False))
    return f, p


def main(argv):
    del argv
    specs = [tuple(int(w) for w in s.split("-")) for s in FLAGS.widths]
    x = jnp.asarray(np.random.default_rng(0).normal(size=(FLAGS.batch, 28, 28, 1)), jnp.float32)
    fns = [forward(w) for w in specs]
    gflop = [float(f.lower(p, x).compile().cost_analysis()["flops"]) / 1e9 for f, p in fns]
    for f, p in fns:
        for _ in range(3):
            jax.block_until_ready(f(p, x))
    times = [[] for _ in specs]
    for _ in range(FLAGS.repeats):
        for (f, p), t in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            jax.block_until_ready(f(p, x))
            t.append(1e3 * (time.perf_counter() - t0))
    base = np.array(times[0])
    rows = []
    for w, g, t in zip(specs, gflop, times, strict=True):
        row = {"widths": list(w), "gflop": g, "median_ms": float(np.median(t)),
               "speedup": float(np.median(base) / np.median(t)),
               "speedup_median_of_rounds": float(np.median(base / np.array(t))), "samples_ms": t}  # fmt: skip
        print({k: v for k, v in row.items() if k != "samples_ms"}, flush=True)
        rows.append(row)
    out = {"batch": FLAGS.batch, "repeats": FLAGS.repeats, "threads": FLAGS.threads, "rows": rows,
           "load_average": os.getloadavg(), "environment": environment(), "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    with open(FLAGS.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    app.run(main)
