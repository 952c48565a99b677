"""Structured pruning of conv channels on Fashion-MNIST, and serving a model whose per-call cost dominates.

A plain VGG-style CNN (`vgg`, widths 32/64/128, one 3x3 conv per stage, no normalization, dense 256; 7.7 M
multiply-adds per image, 96 % of them in the convolutions) trained with the Fashion-MNIST config's optimizer
(AdamW 2e-3, warmup + cosine, batch 128) for --steps steps, then:

1. `prune_vgg` keeps --keep (default 75 % / 50 %) of every conv's channels by ||filter|| * ||weights reading the
   channel|| (a smaller dense VGG), and the pruned models and the dense control are each fine-tuned --finetune_steps Adam steps
   (lr 3e-4, batch 128, train split in fixed order). Test accuracy (10k) before/after; latency of one jitted
   forward at batch 256, median of --repeats calls, the dense model timed alternately with each pruned one (the
   cores are shared with other jobs: alternating puts both under the same load).
2. The dense run is exported (`jaxdl.export`) and load-tested (`python -m jaxdl.serve.loadtest`, loopback) at max
   batch 1 / 8 / 32.

    python experiments/deploy/conv_study.py --workdir=/tmp/deploy_conv --out=experiments/deploy/conv_results.json
    python experiments/deploy/conv_study.py --workdir=/tmp/deploy_conv --out=experiments/deploy/conv_results_ft300.json \
        --finetune_steps=300 --keep=0.625,0.5 --requests=0   # reuses the trained run in --workdir

Runtime on the reference machine (2 cores shared with other jobs, load ~18): 16 min for the README's first
command (the defaults: 300 steps, 100 fine-tuning steps, 500 requests), 8 min for the second. One seed (0).
"""

import json
import os
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags

from jaxdl.compress.structured import prune_vgg
from jaxdl.export import export_run
from jaxdl.metrics import environment
from jaxdl.state import restore_run
from jaxdl.train import train_and_evaluate

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(1, os.path.join(os.path.dirname(__file__), "..", "fashion_mnist"))
from config import get_config  # noqa: E402  (experiments/fashion_mnist/config.py)
from structured_common import dense_row, pruned_row, split_arrays  # noqa: E402

flags.DEFINE_string("workdir", "/tmp/deploy_conv", "where the run and the artifact go")
flags.DEFINE_string("out", "experiments/deploy/conv_results.json", "results JSON")
flags.DEFINE_integer("steps", 300, "training steps of the dense CNN")
flags.DEFINE_integer("finetune_steps", 100, "Adam steps fine-tuning each pruned model and the dense control")
flags.DEFINE_integer("repeats", 20, "timed forward calls per model")
flags.DEFINE_integer("requests", 500, "load-test requests per batching setting (0: no load test)")
flags.DEFINE_list("keep", ["0.75", "0.5"], "fractions of channels kept")
FLAGS = flags.FLAGS

MODEL = {"name": "vgg", "widths": (32, 64, 128), "convs": 1, "hidden": 256, "norm": "none"}


def main(argv):
    del argv
    c = get_config("lenet")
    c.model = ml_collections.ConfigDict(MODEL)
    c.train.steps, c.optim.warmup_steps = FLAGS.steps, min(50, FLAGS.steps // 4)
    c.train.eval_every, c.train.checkpoint_every, c.train.log_every, c.train.progress = 0, 0, 100, False
    run_dir = os.path.join(FLAGS.workdir, "vgg")
    t0 = time.time()
    final = train_and_evaluate(c, run_dir, devices=jax.devices()[:1])
    print(f"trained: {final} ({time.time() - t0:.0f} s)", flush=True)
    out = {"model": MODEL, "steps": FLAGS.steps, "finetune_steps": FLAGS.finetune_steps, "train_eval": final}

    data_arrays = (*split_arrays("train"), *split_arrays("test"))
    run = restore_run(run_dir, devices=jax.devices()[:1])
    g, params, rest = run.graphdef, run.state["params"], run.state["rest"]
    p = jax.tree.map(np.asarray, params.to_pure_dict())
    row, dense_fwd = dense_row(g, params, rest, data_arrays, FLAGS.finetune_steps)
    dense = {"keep": 1.0, "widths": list(MODEL["widths"]), **row}
    rows = [dense]
    print(dense, flush=True)
    for keep in map(float, FLAGS.keep):
        cfg, newp, _ = prune_vgg(MODEL, p, keep)
        row = pruned_row(cfg, newp, (28, 28, 1), dense_fwd, params, data_arrays, FLAGS.finetune_steps, FLAGS.repeats)
        row = {"keep": keep, "widths": list(cfg["widths"]), **row}
        print({k: v for k, v in row.items() if "samples" not in k}, flush=True)
        rows.append(row)
    out["structured_pruning_conv"] = rows

    if FLAGS.requests:
        art_dir = os.path.join(FLAGS.workdir, "artifact_vgg")
        export_run(run_dir, art_dir)
        load_json = os.path.join(FLAGS.workdir, "loadtest_vgg.json")
        subprocess.run(
            [sys.executable, "-m", "jaxdl.serve.loadtest", f"--artifact={art_dir}", f"--out={load_json}",
             "--settings=1:0,8:2,32:5", f"--requests={FLAGS.requests}", "--concurrency=32"],
            check=True,
        )  # fmt: skip
        with open(load_json) as f:
            out["serving_vgg"] = json.load(f)["results"]
    out["environment"] = environment()
    out["date"] = time.strftime("%Y-%m-%d")
    with open(FLAGS.out, "w") as f:
        json.dump(out, f, indent=1, default=float)


if __name__ == "__main__":
    app.run(main)
