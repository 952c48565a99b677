"""Where an XLA:CPU train step spends its time: a `jax.profiler` trace of the trainer's compiled step, read back
thunk by thunk (the thunk runtime records one event per executed thunk: fusions, library calls such as
`onednn_fusion` / `ynn_fusion`, copies, convolutions), summed per thunk name and per thread.

  XLA_FLAGS=... python experiments/cpu_perf/profile_step.py --models=lenet --steps=10 --out=OUT.json

Per model it writes: ms per step (the step function's wall time inside the trace), and for each thunk name the
count and ms per step, and the busy ms per step of each XLA thread (`tf_XLAEigen/*` intra-op pool,
`tf_XLAExecute/*` executor) — busy time summed over threads / wall time = how many cores the step keeps busy.
Timings inside a trace carry the tracer's overhead; read the shares, and take absolute step times from run.py.
"""

import collections
import glob
import gzip
import json
import os
import sys
import tempfile
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxdl.metrics import environment  # noqa: E402
from jaxdl.steptime import compile_step  # noqa: E402

flags.DEFINE_string("models", "lenet", "Models of run.py's MODELS to profile.")
flags.DEFINE_integer("steps", 10, "Traced steps (after 3 untraced warm-up steps).")
flags.DEFINE_string("out", "", "JSON to write ('' prints only).")
flags.DEFINE_integer("top", 15, "Thunk names listed per model.")
FLAGS = flags.FLAGS

# Events of the Python thread and of the runtime's bookkeeping: not thunks.
_NOT_THUNKS = (
    "ThunkExecutor::",
    "SlinkyThreadPool::",
    "ThreadpoolListener::",
    "$",
    "PjitFunction",
    "CommonPjRt",
    "PjRt",
)


def read_trace(logdir: str) -> list[dict]:
    """The complete ('X') events of the perfetto trace `jax.profiler.trace` wrote under `logdir`, with thread
    names attached as `thread`."""
    paths = glob.glob(os.path.join(logdir, "**", "*.trace.json.gz"), recursive=True)
    if len(paths) != 1:
        raise FileNotFoundError(f"expected one *.trace.json.gz under {logdir}, found {paths}")
    with gzip.open(paths[0]) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    names = {e["tid"]: e["args"]["name"] for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"}
    return [dict(e, thread=names.get(e.get("tid"), str(e.get("tid")))) for e in events if e.get("ph") == "X"]


def summarize(events: list[dict], steps: int, top: int, wall_ms: float) -> dict:
    """Per-step ms of each thunk name and of each XLA thread's busy time over a trace of `steps` steps whose
    synchronized wall time per step is `wall_ms` (measured around each call, outside the tracer's events)."""
    wall = wall_ms
    per_name, count, per_thread = collections.Counter(), collections.Counter(), collections.Counter()
    for e in events:
        if not e["thread"].startswith("tf_XLA") or e["name"].startswith(_NOT_THUNKS):
            continue
        per_name[e["name"]] += e["dur"] / 1e3 / steps
        count[e["name"]] += 1
        per_thread[e["thread"]] += e["dur"] / 1e3 / steps
    busy = sum(per_thread.values())
    thunks = [
        dict(name=n, ms_per_step=round(ms, 3), calls_per_step=count[n] / steps, share_of_busy=round(ms / busy, 3))
        for n, ms in per_name.most_common(top)
    ]
    kinds = collections.Counter()
    for n, ms in per_name.items():
        kinds[_kind(n)] += ms
    return dict(
        step_wall_ms=round(wall, 3),
        busy_ms_per_step=round(busy, 3),
        cores_busy=round(busy / wall, 2) if wall else None,
        threads={t: round(ms, 3) for t, ms in per_thread.most_common()},
        kinds={k: round(ms, 3) for k, ms in kinds.most_common()},
        thunks=thunks,
    )


def _kind(name: str) -> str:
    """A thunk name's family: library calls, convolutions, copies/transposes, other fusions."""
    for key in ("onednn", "ynn", "xnn", "convolution", "conv_general", "transpose", "copy", "dot", "reduce"):
        if key in name:
            return key
    return "other fusion"


def profile(name: str, steps: int, top: int) -> dict:
    import run  # experiments/cpu_perf/run.py: the same configs, shapes and batches as the timing table

    config, shape, classes, batch = run.model_config(name)
    step, state, sharding = compile_step(config, dict(input_shape=shape, num_classes=classes))
    batch_fn = lambda r: {  # noqa: E731
        "input": r.standard_normal((batch, *shape), np.float32),
        "label": r.integers(0, classes, batch).astype(np.int32),
    }
    if name == "gpt":
        batch_fn = lambda r: (lambda t: {"input": t[:, :-1], "label": t[:, 1:]})(  # noqa: E731
            r.integers(0, classes, (batch, shape[0] + 1)).astype(np.int32)
        )
    rng = np.random.default_rng(0)
    for _ in range(3):  # compile and warm caches before the trace starts; the step donates its state
        state, metrics = step(state, jax.device_put(batch_fn(rng), sharding))
    jax.block_until_ready((state, metrics))
    times = []
    with tempfile.TemporaryDirectory() as logdir:
        with jax.profiler.trace(logdir, create_perfetto_trace=True):
            for _ in range(steps):
                inputs = jax.block_until_ready(jax.device_put(batch_fn(rng), sharding))
                t0 = time.perf_counter()
                state, metrics = step(state, inputs)
                jax.block_until_ready((state, metrics))
                times.append(time.perf_counter() - t0)
        events = read_trace(logdir)
    out = summarize(events, steps, top, wall_ms=1e3 * float(np.mean(times)))
    out["synchronized_step_ms_median"] = round(1e3 * float(np.median(times)), 3)
    return out


def main(argv):
    del argv
    result = dict(xla_flags=os.environ.get("XLA_FLAGS", ""), environment=environment(), steps=FLAGS.steps)
    for name in FLAGS.models.split(","):
        result[name] = p = profile(name, FLAGS.steps, FLAGS.top)
        print(
            f"{name}: step {p['step_wall_ms']} ms, XLA threads busy {p['busy_ms_per_step']} ms "
            f"({p['cores_busy']} cores); by kind {p['kinds']}"
        )
        for t in p["thunks"]:
            print(f"  {t['ms_per_step']:8.3f} ms  x{t['calls_per_step']:<4g} {t['share_of_busy']:.3f}  {t['name']}")
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    app.run(main)
