"""Structured pruning of attention heads: a ViT on Fashion-MNIST with 8 heads per layer pruned to fewer heads of the
same width (`jaxdl.compress.heads.prune_heads`: a smaller dense model), accuracy and latency before/after fine-tuning.

The ViT (patch 4 -> 49 patches + class token, dim 96, depth 4, 8 heads of width 12, MLP 192) is trained with the
Fashion-MNIST config's optimizer (AdamW 1e-3, warmup + cosine, batch 128) for --steps steps, then every layer keeps
--keep of its heads by ||W_v[h]|| * ||W_o[h]||; the pruned models and the dense control are each fine-tuned
--finetune_steps Adam steps (lr 3e-4, batch 128, train split in fixed order). Test accuracy (10k) before/after;
latency of one jitted forward at batch 256, median of --repeats calls, the dense model timed alternately with each
pruned one (shared cores: alternating puts both under the same load); XLA's FLOP count of that forward.

    python experiments/deploy/head_study.py --workdir=/tmp/deploy_heads --seed=0 --out=experiments/deploy/head_results.json

Runtime on the reference machine (2 cores shared with other jobs): see experiments/deploy/README.md.
"""

import importlib.util
import json
import os
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags

from jaxdl.compress.heads import prune_heads
from jaxdl.metrics import environment
from jaxdl.state import restore_run
from jaxdl.train import train_and_evaluate


def _sibling(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(__file__), path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


common = _sibling("structured_common.py", "structured_common")
fmnist_config = _sibling(os.path.join("..", "fashion_mnist", "config.py"), "fashion_mnist_config")

flags.DEFINE_string("workdir", "/tmp/deploy_heads", "where the run goes")
flags.DEFINE_string("out", "experiments/deploy/head_results.json", "results JSON")
flags.DEFINE_integer("steps", 600, "training steps of the dense ViT")
flags.DEFINE_integer("seed", 0, "training seed (config.seed)")
flags.DEFINE_integer("finetune_steps", 200, "Adam steps fine-tuning each pruned model and the dense control")
flags.DEFINE_integer("repeats", 20, "timed forward calls per model")
flags.DEFINE_list("keep", ["0.5", "0.25"], "fractions of each layer's heads kept")
FLAGS = flags.FLAGS

MODEL = {"name": "vit", "patch": 4, "dim": 96, "depth": 4, "heads": 8, "mlp_dim": 192, "pool": "cls"}


def main(argv):
    del argv
    c = fmnist_config.get_config("lenet")
    c.model = ml_collections.ConfigDict(MODEL)
    c.seed, c.optim.lr = FLAGS.seed, 1e-3
    c.train.steps, c.optim.warmup_steps = FLAGS.steps, min(50, FLAGS.steps // 4)
    c.train.eval_every, c.train.checkpoint_every, c.train.log_every, c.train.progress = 0, 0, 100, False
    run_dir = os.path.join(FLAGS.workdir, f"vit_seed{FLAGS.seed}")
    t0 = time.time()
    final = train_and_evaluate(c, run_dir, devices=jax.devices()[:1])
    print(f"trained: {final} ({time.time() - t0:.0f} s)", flush=True)
    out = {"model": MODEL, "seed": FLAGS.seed, "steps": FLAGS.steps, "finetune_steps": FLAGS.finetune_steps,
           "train_eval": final, "train_seconds": time.time() - t0}  # fmt: skip

    data_arrays = (*common.split_arrays("train"), *common.split_arrays("test"))
    run = restore_run(run_dir, devices=jax.devices()[:1])
    g, params, rest = run.graphdef, run.state["params"], run.state["rest"]
    p = jax.tree.map(np.asarray, params.to_pure_dict())
    row, dense_fwd = common.dense_row(g, params, rest, data_arrays, FLAGS.finetune_steps)
    dense = {"keep": 1.0, "heads": MODEL["heads"], **row}
    rows = [dense]
    print(dense, flush=True)
    for keep in map(float, FLAGS.keep):
        cfg, newp, _ = prune_heads(MODEL, p, keep)
        row = common.pruned_row(
            cfg, newp, (28, 28, 1), dense_fwd, params, data_arrays, FLAGS.finetune_steps, FLAGS.repeats
        )
        row = {"keep": keep, "heads": cfg["heads"], **row}
        print({k: v for k, v in row.items() if "samples" not in k}, flush=True)
        rows.append(row)
    out["head_pruning"] = rows
    out["environment"] = environment()
    out["date"] = time.strftime("%Y-%m-%d")
    with open(FLAGS.out, "w") as f:
        json.dump(out, f, indent=1, default=float)


if __name__ == "__main__":
    app.run(main)
