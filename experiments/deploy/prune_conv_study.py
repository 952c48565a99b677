"""Structured conv-channel pruning of the Fashion-MNIST VGG toward the issue's bar (>= 1.5x measured CPU speedup of
the smaller dense model at <= 1 point accuracy loss): importance scores, per-layer widths chosen by measured cost,
longer and iterative fine-tuning.

The dense model is conv_study.py's (`vgg` widths 32/64/128, one 3x3 conv per stage, no norm, dense 256; the
Fashion-MNIST config's optimizer, --steps steps, seed per --seeds). For each seed:

1. No fine-tuning: test accuracy right after pruning to each --keeps width triple, channels ranked per layer by
   `random` (a seeded permutation: the floor a score must beat), `l1` (filter L1 norm, Li et al. 2017), `norm`
   (||filter|| * ||weights reading the channel||, `channel_importance`), `taylor` (first-order Taylor
   (dL/ds_j)^2 averaged over --calib batches of 64 train images, `jaxdl.compress.taylor`).
2. Fine-tuning: for each --ft_keeps triple, each --ft_scores score and each --rounds R: R rounds of (score the
   current model, prune to the next widths on a linear path to the target, --finetune_steps / R Adam steps of
   conv_study's loop: lr 3e-4, batch 128, train split in fixed order, continuing through the rounds); the dense
   control gets the same --finetune_steps. Test accuracy (10,000 images).
3. Latency: one jitted forward at batch 256 of the dense model and of each pruned width triple, called alternately
   --repeats times (both under the same load on the shared cores); medians, the median of the per-pair ratios, and
   XLA's FLOP count. Compile excluded (3 warm-up calls each).

    python experiments/deploy/prune_conv_study.py --workdir=/tmp/deploy_prune_conv \
        --out=experiments/deploy/prune_conv_results.json
    python experiments/deploy/prune_conv_study.py --smoke --workdir=/tmp/deploy_prune_conv_smoke --out=/tmp/s.json

Runtime on the reference machine (2 shared cores): see experiments/deploy/README.md §4 (minutes per seed).
"""

import json
import os
import sys
import time

import jax
import ml_collections
import numpy as np
import optax
from absl import app, flags
from flax import nnx

from jaxdl import models
from jaxdl.compress.structured import channel_importance, filter_l1_importance, prune_vgg
from jaxdl.compress.taylor import taylor_importance
from jaxdl.metrics import environment
from jaxdl.state import restore_run
from jaxdl.train import train_and_evaluate

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(HERE, "..", "fashion_mnist"))
from config import get_config  # noqa: E402  (experiments/fashion_mnist/config.py)
from structured_common import accuracy, alternating_latency_ms, finetune, flops, forward_fn, split_arrays  # noqa: E402

flags.DEFINE_string("workdir", "/tmp/deploy_prune_conv", "where the dense runs go (vgg_s<seed>; reused if present)")
flags.DEFINE_string("out", "experiments/deploy/prune_conv_results.json", "results JSON")
flags.DEFINE_integer("steps", 300, "training steps of the dense CNN")
flags.DEFINE_list("seeds", ["0"], "training seeds of the dense CNN")
flags.DEFINE_list(
    "keeps", ["16-32-64", "24-32-64", "32-32-64", "32-24-64", "32-32-48"], "width triples, no fine-tuning"
)
flags.DEFINE_list("scores", ["random", "l1", "norm", "taylor"], "scores ranked without fine-tuning")
flags.DEFINE_list("ft_keeps", ["32-32-64"], "width triples fine-tuned")
flags.DEFINE_list("ft_scores", ["norm", "taylor"], "scores fine-tuned")
flags.DEFINE_list("rounds", ["1"], "prune -> fine-tune rounds (1 = one shot)")
flags.DEFINE_integer("finetune_steps", 300, "Adam steps of fine-tuning, in total over the rounds")
flags.DEFINE_integer("calib", 16, "calibration batches of 64 train images for the Taylor score")
flags.DEFINE_integer("repeats", 30, "timed forward calls per model")
flags.DEFINE_bool("smoke", False, "tiny run of every path (20 training steps, 10 fine-tuning steps, 2 calibration)")
FLAGS = flags.FLAGS

MODEL = {"name": "vgg", "widths": (32, 64, 128), "convs": 1, "hidden": 256, "norm": "none"}
LAYERS = [("convs", i) for i in range(3)]


def triple(spec: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in spec.split("-"))
    except ValueError:
        raise ValueError(f"width triple {spec!r}: expected three integers like 32-32-64") from None
    if len(widths) != 3 or not all(1 <= w <= m for w, m in zip(widths, MODEL["widths"], strict=True)):
        raise ValueError(f"width triple {spec!r}: need three widths in [1, {MODEL['widths']}]")
    return widths


def build(cfg, pure):
    with nnx.use_eager_sharding(False):
        small = models.make(cfg, input_shape=(28, 28, 1), num_classes=10, rngs=nnx.Rngs(0))
    g, p, r = nnx.split(small, nnx.Param, ...)
    p.replace_by_pure_dict(pure)
    return g, p, r


def scores_of(name: str, cfg, pure, xs, ys, seed: int) -> list[np.ndarray]:
    if name == "random":
        rng = np.random.default_rng(seed)
        return [rng.permutation(w).astype(np.float64) for w in cfg["widths"]]
    if name == "l1":
        return filter_l1_importance(pure)
    if name == "norm":
        return channel_importance(pure)
    if name == "taylor":
        g, p, r = build(cfg, pure)

        def loss(pd, batch):
            st = jax.tree.map(lambda v: v, p)
            st.replace_by_pure_dict(pd)
            logits = nnx.merge(g, st, r)(batch[0], train=False)
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()

        idx = np.random.default_rng(seed).permutation(len(xs))[: 64 * FLAGS.calib].reshape(FLAGS.calib, 64)
        return taylor_importance(loss, pure, ((xs[i], ys[i]) for i in idx), LAYERS)
    raise ValueError(f"unknown score {name!r}: one of random, l1, norm, taylor")


def pure_of(p) -> dict:
    return jax.tree.map(np.asarray, p.to_pure_dict())


def prune_finetune(pure, target, score, rounds, steps, xs, ys, seed):
    """R rounds of score -> prune to the next widths -> steps / R fine-tuning steps; (config, params State, g, r)."""
    cfg, cur = dict(MODEL), pure
    start = np.array(MODEL["widths"])
    per_round = [steps // rounds + (1 if r < steps % rounds else 0) for r in range(rounds)]
    offset = 0
    for r in range(1, rounds + 1):
        widths = [int(round(w)) for w in start - (start - np.array(target)) * r / rounds]
        cfg, cur, _ = prune_vgg(cfg, cur, widths, scores=scores_of(score, cfg, cur, xs, ys, seed + r))
        g, p, rest = build(cfg, cur)
        # continue the fixed train order across rounds (round r starts where round r-1 stopped)
        p = finetune(g, p, rest, np.roll(xs, -offset * 128, 0), np.roll(ys, -offset * 128, 0), per_round[r - 1])
        offset += per_round[r - 1]
        cur = pure_of(p)
    return cfg, p, g, rest


def main(argv):
    del argv
    if FLAGS.smoke:
        FLAGS.steps, FLAGS.finetune_steps, FLAGS.calib, FLAGS.repeats = 20, 10, 2, 3
    keeps, ft_keeps = [triple(k) for k in FLAGS.keeps], [triple(k) for k in FLAGS.ft_keeps]
    rounds = [int(r) for r in FLAGS.rounds]
    out = {"model": MODEL, "steps": FLAGS.steps, "finetune_steps": FLAGS.finetune_steps, "calib_batches_of_64": FLAGS.calib,
           "repeats": FLAGS.repeats, "seeds": []}  # fmt: skip
    xs, ys = split_arrays("train")
    xt, yt = split_arrays("test")
    xb = xt[:256]
    for seed in map(int, FLAGS.seeds):
        t_seed = time.time()
        c = get_config("lenet")
        c.seed = seed
        c.model = ml_collections.ConfigDict(MODEL)
        c.train.steps, c.optim.warmup_steps = FLAGS.steps, min(50, FLAGS.steps // 4)
        c.train.eval_every, c.train.checkpoint_every, c.train.log_every, c.train.progress = 0, 0, 100, False
        run_dir = os.path.join(FLAGS.workdir, f"vgg_s{seed}")
        train_and_evaluate(c, run_dir, devices=jax.devices()[:1])
        run = restore_run(run_dir, devices=jax.devices()[:1])
        g, params, rest = run.graphdef, run.state["params"], run.state["rest"]
        pure = pure_of(params)
        dense_fwd = forward_fn(g, rest)
        res = {"seed": seed, "dense_accuracy": accuracy(dense_fwd, params, xt, yt)}
        t0 = time.time()
        res["dense_accuracy_finetuned"] = accuracy(dense_fwd, finetune(g, params, rest, xs, ys, FLAGS.finetune_steps),
                                                   xt, yt)  # fmt: skip
        res["dense_finetune_s"] = time.time() - t0
        print(f"seed {seed}: dense {res['dense_accuracy']:.4f} -> fine-tuned {res['dense_accuracy_finetuned']:.4f}",
              flush=True)  # fmt: skip

        res["no_finetune"] = []
        for keep in keeps:
            for score in FLAGS.scores:
                cfg, newp, _ = prune_vgg(MODEL, pure, list(keep), scores=scores_of(score, MODEL, pure, xs, ys, seed))
                sg, sp, sr = build(cfg, newp)
                row = {"widths": list(keep), "score": score, "accuracy": accuracy(forward_fn(sg, sr), sp, xt, yt)}
                print(row, flush=True)
                res["no_finetune"].append(row)

        res["finetuned"] = []
        for keep in ft_keeps:
            for score in FLAGS.ft_scores:
                for r in rounds:
                    t0 = time.time()
                    cfg, sp, sg, sr = prune_finetune(pure, keep, score, r, FLAGS.finetune_steps, xs, ys, seed)
                    row = {"widths": list(keep), "score": score, "rounds": r, "steps": FLAGS.finetune_steps,
                           "accuracy": accuracy(forward_fn(sg, sr), sp, xt, yt), "wall_s": time.time() - t0}  # fmt: skip
                    row["delta_points_vs_dense_finetuned"] = 100 * (row["accuracy"] - res["dense_accuracy_finetuned"])
                    print(row, flush=True)
                    res["finetuned"].append(row)

        res["latency"] = []
        dense_flops = flops(dense_fwd, params, xb)
        for keep in sorted(set(keeps) | set(ft_keeps)):
            cfg, newp, _ = prune_vgg(MODEL, pure, list(keep))
            sg, sp, sr = build(cfg, newp)
            fwd = forward_fn(sg, sr)
            dense_ms, ms, dt, t = alternating_latency_ms(dense_fwd, params, fwd, sp, xb, FLAGS.repeats)
            row = {"widths": list(keep), "flops_b256": flops(fwd, sp, xb), "dense_flops_b256": dense_flops,
                   "latency_ms_b256": ms, "dense_latency_ms_b256_same_time": dense_ms, "speedup": dense_ms / ms,
                   "speedup_median_of_pairs": float(np.median(np.array(dt) / np.array(t))),
                   "params": int(sum(a.size for a in jax.tree.leaves(newp))),
                   "latency_samples_ms": t, "dense_latency_samples_ms": dt}  # fmt: skip
            print({k: v for k, v in row.items() if "samples" not in k}, flush=True)
            res["latency"].append(row)
        res["wall_s"] = time.time() - t_seed
        out["seeds"].append(res)
        out["environment"] = environment()
        out["date"] = time.strftime("%Y-%m-%d")
        with open(FLAGS.out, "w") as f:  # after every seed, so a cut-off run keeps what it measured
            json.dump(out, f, indent=1, default=float)


if __name__ == "__main__":
    app.run(main)
