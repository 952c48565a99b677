"""Runs every arm of config.py (one process each, one after another), then writes results.json and results.csv
beside this file: test accuracy, parameters, median CPU train step time (the trainer's `train/step_ms`: one step
timed alone, synchronized) and wall seconds per run, with the environment.

  python experiments/efficient_convnets/study.py --workdir=/tmp/runs/effconv --seeds=0 [--steps=200] [--arms=a,b]
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time

import jax

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

from experiments.efficient_convnets.config import ARMS  # noqa: E402


def parameters(arm: str) -> int:
    """Trainable parameters of an arm's model (abstract shapes: nothing is computed)."""
    from flax import nnx

    from experiments.efficient_convnets.config import get_config
    from jaxdl import models

    config = dict(get_config(arm).model)
    with nnx.use_eager_sharding(False):
        model = nnx.eval_shape(lambda: models.make(config, input_shape=(28, 28, 1), num_classes=10, rngs=nnx.Rngs(0)))
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def run_arm(arm: str, seed: int, steps: int, workdir: str) -> dict:
    from jaxdl.metrics import read_metrics

    out = os.path.join(workdir, f"{arm}_s{seed}")
    cmd = [
        sys.executable,
        "-m",
        "jaxdl.main",
        f"--config={HERE}/config.py:{arm},seed={seed},steps={steps}",
        f"--workdir={out}",
    ]
    start, wall = time.time(), None
    done = os.path.exists(os.path.join(out, "metrics.jsonl")) and any("eval/accuracy" in r for r in read_metrics(out))
    if not done:  # a finished arm is collected, not rerun
        log = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if log.returncode:
            raise RuntimeError(f"arm {arm} seed {seed} failed:\n{log.stderr[-3000:]}")
        wall = round(time.time() - start, 1)
    rows = read_metrics(out)
    step_ms = sorted(r["train/step_ms"] for r in rows if "train/step_ms" in r)
    final = [r for r in rows if "eval/accuracy" in r][-1]
    params = parameters(arm)
    with open(os.path.join(out, "environment.json")) as f:
        env = json.load(f)
    return {
        "arm": arm,
        "seed": seed,
        "steps": steps,
        "test_accuracy": final["eval/accuracy"],
        "parameters": params,
        "median_step_ms": step_ms[len(step_ms) // 2],
        "wall_s": wall,
        "jax": env["packages"]["jax"],
        "flax": env["packages"]["flax"],
        "git_commit": env["git_commit"],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", required=True)
    p.add_argument("--seeds", default="0")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--arms", default=",".join(ARMS))
    a = p.parse_args()
    arms = a.arms.split(",")
    bad = [x for x in arms if x not in ARMS]
    if bad:
        raise SystemExit(f"--arms: unknown {bad}; known {list(ARMS)}")
    results = [run_arm(arm, int(s), a.steps, a.workdir) for s in a.seeds.split(",") for arm in arms]
    import datetime
    import platform

    meta = {
        "command": " ".join(sys.argv),
        "device": f"{platform.machine()} CPU, {os.cpu_count()} cores, shared with other jobs (load average > 10)",
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
    }
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump({"meta": meta, "runs": results}, f, indent=1)
    with open(os.path.join(HERE, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(results[0]))
        w.writeheader()
        w.writerows(results)
    for r in results:
        print(r)


if __name__ == "__main__":
    main()
