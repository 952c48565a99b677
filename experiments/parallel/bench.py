"""Memory/throughput of each sharding strategy: per-device parameter + optimizer bytes and train-step time.

Command (8 simulated CPU devices; on a GPU machine drop XLA_FLAGS and pass --strategies=dp to time one device):
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python experiments/parallel/bench.py [--dim=256 --depth=8]
        [--out=experiments/parallel/bench.json]   (every row, with date, versions, devices and flags)

Builds the scanned transformer (MNIST-1D-shaped input, [batch, 40]) through the trainer's own
`init_sharded_state` and train step for each (mesh, strategy), times `--steps` steps after a warm-up (median,
with device sync, fresh random inputs), and prints a markdown table. Per-device bytes are read off the first
device's shards of the live arrays, not computed from the rules. CPU timings measure partitioning overheads
(collectives are memcpys), not the speed of a real interconnect.
"""

import datetime
import json
import os
import platform
import sys

import jax
import ml_collections
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from jaxdl import config as config_lib  # noqa: E402
from jaxdl import metrics  # noqa: E402
from jaxdl.steptime import compile_step, time_steps  # noqa: E402

flags.DEFINE_integer("dim", 256, "Model width.")
flags.DEFINE_integer("depth", 8, "Layers (divisible by pipeline stages x repeats).")
flags.DEFINE_integer("heads", 8, "Attention heads.")
flags.DEFINE_integer("batch", 64, "Global batch.")
flags.DEFINE_integer("steps", 10, "Timed steps (after 2 warm-up steps); 0: memory columns only, no step is run.")
flags.DEFINE_list("strategies", None, "Subset of the table's rows (default: all that fit the devices).")
flags.DEFINE_string("out", "", "Write every row, with date, versions and devices, to this JSON ('' = none).")
FLAGS = flags.FLAGS

MOE = dict(moe_experts=8, moe_top_k=2, moe_capacity_factor=1.25)
# name: (mesh, strategy, extra config.sharding options[, extra config.model options])
ROWS = {
    "dp": (dict(data=-1), "dp", {}),
    "fsdp": (dict(data=1, fsdp=-1), "fsdp", {}),
    "tp": (dict(data=1, tensor=-1), "tp", {}),
    "fsdp+tp": (dict(data=1, fsdp=-1, tensor=2), "fsdp+tp", {}),
    "dp+tp+sp": (dict(data=-1, tensor=4), "tp+sp", {}),
    "pp gpipe": (dict(data=-1, pipeline=4), "pp", dict(pipeline_microbatches=4)),
    "pp circular": (
        dict(data=-1, pipeline=4),
        "pp",
        dict(pipeline_microbatches=4, pipeline_schedule="circular", pipeline_repeats=2),
    ),
    "dp+tp+pp": (dict(data=-1, tensor=2, pipeline=2), "tp+pp", dict(pipeline_microbatches=4)),
    "moe dp": (dict(data=-1), "dp", {}, MOE),
    "moe ep": (dict(data=-1, expert=8), "ep", {}, MOE),
    "moe ep+tp": (dict(data=-1, expert=4, tensor=2), "ep+tp", {}, MOE),
}


def bench_row(name, devices):
    mesh_axes, strategy, sharding, *model = ROWS[name]
    c = config_lib.base()
    c.data.name, c.data.batch_size = "mnist1d", FLAGS.batch
    c.model = ml_collections.ConfigDict(
        dict(
            name="transformer",
            depth=FLAGS.depth,
            dim=FLAGS.dim,
            heads=FLAGS.heads,
            mlp_dim=4 * FLAGS.dim,
            **(model or [{}])[0],
        )
    )
    c.optim.name = "adamw"
    for k, v in mesh_axes.items():
        c.mesh[k] = v
    c.sharding.strategy = strategy
    for k, v in sharding.items():
        c.sharding[k] = v
    ds_info = dict(input_shape=(40,), num_classes=10)
    step, state, batch_sharding = compile_step(c, ds_info, devices)
    per_device = lambda tree: sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(tree))
    total = lambda tree: sum(x.nbytes for x in jax.tree.leaves(tree))
    row = dict(
        params=sum(x.size for x in jax.tree.leaves(state["params"])),
        total_mb=(total(state["params"]) + total(state["opt_state"])) / 2**20,
        device_mb=(per_device(state["params"]) + per_device(state["opt_state"])) / 2**20,
    )
    mesh = batch_sharding.mesh
    make_batch = lambda rng: {
        "input": rng.standard_normal((FLAGS.batch, 40), np.float32),
        "label": rng.integers(0, 10, FLAGS.batch).astype(np.int32),
    }
    if FLAGS.steps > 0:
        times, _ = time_steps(step, state, batch_sharding, make_batch, steps=FLAGS.steps)
        row["step_ms"] = 1e3 * float(np.median(times))
    else:
        row["step_ms"] = None
    row["mesh"] = ", ".join(f"{a}={n}" for a, n in mesh.shape.items() if n > 1) or "1 device"
    return row


def main(_):
    devices = jax.devices()
    names = FLAGS.strategies or list(ROWS)
    print(
        f"jax {jax.__version__}, {len(devices)} x {devices[0].device_kind} ({devices[0].platform}); "
        f"transformer dim={FLAGS.dim} depth={FLAGS.depth} heads={FLAGS.heads}, batch {FLAGS.batch}, AdamW fp32\n"
    )
    print("| strategy | mesh | params | params+opt total (MiB) | per device (MiB) | ratio | step (ms, median) |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for name in names:
        try:
            r = bench_row(name, devices)
        except ValueError as e:  # a row that does not fit this device count
            print(f"| {name} | — | — | — | — | — | skipped: {e} |")
            rows.append(dict(strategy=name, skipped=str(e)))
        else:
            rows.append(dict(strategy=name, **r, ratio=r["total_mb"] / r["device_mb"]))
            step_ms = "not timed (--steps=0)" if r["step_ms"] is None else f"{r['step_ms']:.1f}"
            print(
                f"| {name} | {r['mesh']} | {r['params']:,} | {r['total_mb']:.2f} | {r['device_mb']:.2f} | "
                f"{r['total_mb'] / r['device_mb']:.1f}x | {step_ms} |",
                flush=True,
            )
        if FLAGS.out:  # rewritten after every row, so an interrupted run keeps the rows it finished
            write_json(FLAGS.out, rows)
    if FLAGS.out:
        print(f"wrote {FLAGS.out}")


def write_json(path: str, rows: list[dict]) -> None:
    record = dict(
        command=" ".join(["python", "experiments/parallel/bench.py", *sys.argv[1:]]),
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        date=datetime.date.today().isoformat(),
        machine=f"{platform.machine()}, {os.cpu_count()} CPU cores",
        environment=metrics.environment(),
        flags=dict(dim=FLAGS.dim, depth=FLAGS.depth, heads=FLAGS.heads, batch=FLAGS.batch, steps=FLAGS.steps),
        seed="init: config.seed 0 (the config default); inputs: np.random.default_rng(0) in jaxdl.steptime.time_steps",
        rows=rows,
    )
    with open(path, "w") as f:
        json.dump(record, f, indent=1, default=str)


if __name__ == "__main__":
    app.run(main)
