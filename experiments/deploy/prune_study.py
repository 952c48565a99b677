"""Gradual magnitude pruning *in the trainer* (`config.optim.prune`, Zhu & Gupta cubic schedule) on the deploy
study's MNIST-1D CNN: the dense run and runs pruned to 70 % and 90 % of the kernel weights (global ranking), each
2,000 steps of the main job's setup (`experiments/mnist1d/config.py:cnn`), masks updated every 100 steps from step
200 to 1,400 (then 600 steps of training at the final mask). Compare with the one-shot rows of results.json.

    python experiments/deploy/prune_study.py --workdir=/tmp/deploy_prune --out=experiments/deploy/prune_results.json

Runtime on the reference machine (2 shared cores): ~2-3 min. Seeds via --seeds (default 0).
"""

import json
import os
import sys
import time

import jax
import ml_collections
from absl import app, flags

from jaxdl.metrics import environment
from jaxdl.train import train_and_evaluate

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "mnist1d"))
from config import get_config  # noqa: E402  (experiments/mnist1d/config.py: the main job's setup)

flags.DEFINE_string("workdir", "/tmp/deploy_prune", "where the runs go")
flags.DEFINE_string("out", "experiments/deploy/prune_results.json", "results JSON")
flags.DEFINE_integer("steps", 2000, "training steps of every run")
flags.DEFINE_list("targets", ["0", "0.7", "0.9"], "final sparsities (0 = the dense run)")
flags.DEFINE_list("seeds", ["0"], "seeds")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    rows = []
    for seed in map(int, FLAGS.seeds):
        for target in map(float, FLAGS.targets):
            c = get_config("cnn")
            c.seed = seed
            c.model = ml_collections.ConfigDict({"name": "cnn1d", "init": "torch"})
            c.train.steps, c.train.eval_every, c.train.checkpoint_every = FLAGS.steps, 0, 0
            c.train.progress = False
            c.optim.prune.update(dict(target=target, begin_step=200, end_step=1400, every=100, scope="global"))
            c.evals = ml_collections.ConfigDict({"main": {"kind": "classify"}, "sparsity": {"kind": "sparsity"}})
            workdir = os.path.join(FLAGS.workdir, f"prune{target}_s{seed}")
            t0 = time.time()
            final = train_and_evaluate(c, workdir, devices=jax.devices()[:1])
            with open(os.path.join(workdir, "sparsity.json")) as f:
                per_layer = json.load(f)
            row = {"seed": seed, "target": target, "accuracy": final["eval/accuracy"], "loss": final["eval/loss"],
                   "sparsity": per_layer, "wall_s": time.time() - t0}  # fmt: skip
            print(json.dumps({k: v for k, v in row.items() if k != "sparsity"}), flush=True)
            rows.append(row)
    out = {"runs": rows, "steps": FLAGS.steps, "schedule": dict(begin_step=200, end_step=1400, every=100),
           "environment": environment(), "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    with open(FLAGS.out, "w") as f:
        json.dump(out, f, indent=1, default=float)


if __name__ == "__main__":
    app.run(main)
