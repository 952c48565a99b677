"""Reproduces the MNIST-1D paper's baseline table: 4 models x {default, shuffled} x seeds -> markdown table.

Command: python experiments/mnist1d/table.py --workdir=workdirs/mnist1d_table [--seeds=0,1,2]
Each cell is a full `jaxdl.main` run of experiments/mnist1d/config.py (its workdir is reused: finished cells
are read back, not rerun). Prints the table with the paper's numbers beside ours.
"""

import json
import os
import sys
import time

import numpy as np
from absl import app, flags
from absl import logging as absl_logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from experiments.mnist1d.config import get_config  # noqa: E402
from jaxdl.train import train_and_evaluate  # noqa: E402

flags.DEFINE_string("workdir", "workdirs/mnist1d_table", "Root of the per-cell workdirs.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds per cell.")
flags.DEFINE_list("models", ["logistic", "mlp", "cnn", "gru"], "Models.")
FLAGS = flags.FLAGS

PAPER = {  # Greydanus 2020, table 1: test accuracy (%), default / shuffled sequences
    "logistic": (32, 32),
    "mlp": (68, 68),
    "cnn": (94, 56),
    "gru": (91, 57),
}


def run_cell(model: str, variant: str, seed: int) -> tuple[float, float]:
    workdir = os.path.join(FLAGS.workdir, f"{model}_{variant}_s{seed}")
    done = os.path.join(workdir, "result.json")
    if os.path.exists(done):
        with open(done) as f:
            r = json.load(f)
        return r["accuracy"], r["seconds"]
    arg = model + (",shuffled" if variant == "shuffled" else "")
    config = get_config(arg)
    config.seed = seed
    config.train.progress = False
    t0 = time.time()
    results = train_and_evaluate(config, workdir)
    r = {"accuracy": results["eval/accuracy"], "seconds": time.time() - t0}
    with open(done, "w") as f:
        json.dump(r, f)
    print(f"{model:9s} {variant:9s} seed {seed}: {100 * r['accuracy']:.1f} % ({r['seconds']:.0f} s)", flush=True)
    return r["accuracy"], r["seconds"]


def main(_):
    absl_logging.set_verbosity(absl_logging.WARNING)
    seeds = [int(s) for s in FLAGS.seeds]
    rows, total = [], 0.0
    for model in FLAGS.models:
        cells = []
        for i, variant in enumerate(("default", "shuffled")):
            accs = []
            for seed in seeds:
                acc, secs = run_cell(model, variant, seed)
                accs.append(100 * acc)
                total += secs
            cells.append(f"{np.mean(accs):.1f} ± {np.std(accs):.1f} | {PAPER[model][i]}")
        rows.append(f"| {model} | " + " | ".join(cells) + " |")
    print(
        f"\nTest accuracy (%), mean ± std over seeds {seeds} (n={len(seeds)}); total train time {total / 60:.1f} min\n"
    )
    print("| model | ours, default | paper | ours, shuffled | paper |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    app.run(main)
