"""A/B of the models' compiled train steps between two checkouts: run.py's model timing from each tree in its own
process, alternating rounds (A, B, A, B, ...) so machine load hits both alike; the last step's loss shows whether
numerics changed.

  git worktree add /tmp/before <commit>
  python experiments/cpu_perf/trees.py --before=/tmp/before --models=lenet --rounds=5 --out=OUT.json

Writes {before|after: {model: [ms per round], model_loss: ...}}, the medians, both trees' commits and the
environment.
"""

import json
import os
import subprocess
import sys

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from jaxdl.metrics import environment  # noqa: E402

flags.DEFINE_string("before", None, "Root of the checkout to compare against (e.g. a `git worktree`).", required=True)
flags.DEFINE_string("models", "lenet", "Models of run.py's MODELS.")
flags.DEFINE_integer("rounds", 5, "Alternating rounds per tree.")
flags.DEFINE_integer("steps", 20, "Timed steps per model and round.")
flags.DEFINE_string("out", "", "JSON to write.")
FLAGS = flags.FLAGS


def one(root: str) -> dict:
    """run.py's model timing from checkout `root` (its own jaxdl on sys.path), parsed from its output lines."""
    cmd = [sys.executable, os.path.join(root, "experiments/cpu_perf/run.py"), "--repeats=0", "--out=/dev/null"]
    cmd += [f"--models={FLAGS.models}", f"--model_steps={FLAGS.steps}"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": root})
    if proc.returncode:
        raise RuntimeError(f"{root}: {proc.stderr.strip().splitlines()[-1]}")
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("jax "):  # "jax lenet: 52.31 ms/step (loss 2.311925)"
            name, rest = line[4:].split(":", 1)
            out[name], out[f"{name}_loss"] = float(rest.split()[0]), float(rest.split("loss")[1].strip(" )"))
    return out


def commit(root: str) -> str:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--short"], cwd=root, capture_output=True, text=True).stdout.strip()
    return head + (" + uncommitted changes" if dirty else "")


def main(argv):
    del argv
    trees = {"before": os.path.abspath(FLAGS.before), "after": ROOT}
    rounds = {k: [] for k in trees}
    for r in range(FLAGS.rounds):
        for k, root in trees.items():
            rounds[k].append(one(root))
            print(r, k, rounds[k][-1], flush=True)
    models = FLAGS.models.split(",")
    medians = {k: {m: float(np.median([x[m] for x in v])) for m in models} for k, v in rounds.items()}
    result = dict(
        rounds=rounds,
        median_ms=medians,
        after_over_before={m: medians["after"][m] / medians["before"][m] for m in models},
        commits={k: commit(root) for k, root in trees.items()},
        steps=FLAGS.steps,
        environment=environment(),
    )
    print(json.dumps({k: result[k] for k in ("median_ms", "after_over_before")}))
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    app.run(main)
