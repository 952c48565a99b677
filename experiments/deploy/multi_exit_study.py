"""Multi-exit CNN on Fashion-MNIST: accuracy vs average FLOPs and measured CPU latency of early exit over τ.

    nice python experiments/deploy/multi_exit_study.py --workdir=/tmp/multi_exit --out=experiments/deploy/multi_exit_results.json

1. trains `multi_exit_config.py` in WORKDIR/train (resumes / only re-evaluates a finished run);
2. every exit's logits on the validation and test splits; per τ (`jaxdl.serve.cascade.exit_sweep`): accuracy, the
   fraction leaving at each exit, average FLOPs per example (analytic, `multi_exit.exit_flops`: answering at exit k
   pays blocks 0..k and heads 0..k) against the plain forward pass (all blocks, last head);
3. latency: one example at a time (a request of batch 1), `EarlyExit` over the jitted stages vs the jitted plain
   forward, on the first `--latency_examples` test images, the plain model re-timed beside each τ (median of
   `--repeats` passes over those images; mean ms per example).
"""

import functools
import json
import os
import sys
import time

import jax
import numpy as np
from absl import app, flags
from flax import nnx

from jaxdl import data
from jaxdl.metrics import environment
from jaxdl.models.vision.multi_exit import exit_flops
from jaxdl.serve.cascade import EarlyExit, exit_sweep
from jaxdl.state import restore_run
from jaxdl.train import train_and_evaluate

sys.path.insert(0, os.path.dirname(__file__))
from multi_exit_config import get_config  # noqa: E402

flags.DEFINE_string("workdir", "/tmp/multi_exit", "where the run goes")
flags.DEFINE_string("out", "experiments/deploy/multi_exit_results.json", "results JSON")
flags.DEFINE_integer("latency_examples", 300, "test images timed one at a time per τ")
flags.DEFINE_integer("repeats", 3, "timed passes over them (the median pass is reported)")
flags.DEFINE_bool("smoke", False, "a 30-step run (checks the plumbing)")
FLAGS = flags.FLAGS
TAUS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0)


@functools.lru_cache(maxsize=2)
def split_arrays(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    src = data.load(name, split)
    b = data.preprocess(name, {k: np.stack([src[i][k] for i in range(len(src))]) for k in ("image", "label")})
    return b["input"], b["label"]


def per_example_ms(fn, x: np.ndarray, repeats: int) -> float:
    """Median over `repeats` passes of the mean wall time per example of `fn` called on one example at a time."""
    for i in range(min(len(x), 8)):  # warm-up: compile every shape
        fn(x[i : i + 1])
    passes = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(len(x)):
            np.asarray(fn(x[i : i + 1]))
        passes.append((time.perf_counter() - t0) / len(x) * 1e3)
    return float(np.median(passes))


def main(argv):
    del argv
    c = get_config("smoke" if FLAGS.smoke else "")
    workdir = os.path.join(FLAGS.workdir, "train")
    t0 = time.time()
    final = train_and_evaluate(c, workdir, devices=jax.devices()[:1])
    train_s = time.time() - t0
    run = restore_run(workdir, devices=jax.devices()[:1])
    model = nnx.merge(run.graphdef, run.state["params"], run.state["rest"])
    n_exits = model.num_exits
    exits_fn = nnx.jit(lambda m, x: m.exits(x))
    shape, classes = tuple(run.ds_info["input_shape"]), run.ds_info["num_classes"]
    costs = exit_flops(shape, classes, c.model.channels)
    full = exit_flops(shape, classes, c.model.channels, earlier_heads=False)[-1]
    out = {
        "command": " ".join(sys.argv),
        "final_eval": final,
        "train_seconds_this_invocation": train_s,
        "params": int(sum(x.size for x in jax.tree.leaves(run.state["params"]))),
        "flops": {
            "answer_at_exit": costs,
            "plain_forward": full,
            "exit_alone": exit_flops(shape, classes, c.model.channels, earlier_heads=False),
        },
        "taus": list(TAUS),
    }
    for split in ("validation", "test"):
        x, y = split_arrays(c.data.name, split)
        logits = [
            np.concatenate(z)
            for z in zip(
                *(map(np.asarray, exits_fn(model, x[i : i + 1000])) for i in range(0, len(x), 1000)), strict=True
            )
        ]
        rows = exit_sweep(logits, y, TAUS, costs=costs)
        for r in rows:
            r["cost_vs_plain"] = r["cost"] / full
        out[split] = {"exit_accuracy": [float(np.mean(z.argmax(1) == y)) for z in logits], "sweep": rows}
        print(split, json.dumps(out[split]["exit_accuracy"]), flush=True)

    x, _ = split_arrays(c.data.name, "test")
    x = x[: FLAGS.latency_examples]
    # the weights are closed over (jit constants), so a call passes only the activations: per-call overhead is
    # what a server holding one model pays
    stage_fns = [jax.jit(lambda h, k=k: model.stage(k, h)) for k in range(n_exits)]
    stages = [lambda h, f=f: f(h) for f in stage_fns]
    plain = jax.jit(lambda h: model(h))
    timed = []
    for tau in TAUS:
        early = EarlyExit(stages, tau)
        ms = per_example_ms(early, x, FLAGS.repeats)
        timed.append(
            {
                "tau": tau,
                "early_exit_ms": ms,
                "plain_ms": per_example_ms(plain, x, FLAGS.repeats),
            }
        )
        print(timed[-1], flush=True)
    out["latency_batch1"] = {"examples": len(x), "repeats": FLAGS.repeats, "rows": timed}
    out["environment"] = environment()
    with open(FLAGS.out, "w") as f:
        json.dump(out, f, indent=1, default=float)


if __name__ == "__main__":
    app.run(main)
