"""Fashion-MNIST distillation study: LeNet-5 teacher → MLP(64) student, scratch vs distilled (README §5).

    nice python experiments/deploy/distill_study.py --workdir=/tmp/distill --out=experiments/deploy/distill_results.json

1. the teacher (`distill_config.py:teacher`, seed 0);
2. seed 0: the student from scratch and distilled at (T, α) ∈ `CELLS`; the (T, α) with the best
   *validation* accuracy is chosen (ties: the first in that order);
3. seeds 1.. `--seeds - 1`: scratch and the chosen setting again (seed 0's runs are reused).
With --train_fraction=F < 1 (e.g. 0.05, README §5): no sweep; seeds 0.. of scratch and distilled at --T/--alpha with
a class-stratified share F of the student's training labels (drawn per seed, the same for both arms).
Runs resume from their workdirs (a finished run only re-evaluates). Every run's final metrics, steps per second and
wall times go to --out with the environment, written after each run.
"""

import json
import os
import sys
import time

import jax
import numpy as np
from absl import app, flags

from jaxdl.metrics import environment
from jaxdl.train import train_and_evaluate

sys.path.insert(0, os.path.dirname(__file__))
from distill_config import get_config  # noqa: E402

flags.DEFINE_string("workdir", "/tmp/distill", "where the runs go")
flags.DEFINE_string("out", "experiments/deploy/distill_results.json", "results JSON")
flags.DEFINE_integer("seeds", 3, "seeds of the final scratch / distilled comparison (0 .. seeds-1)")
flags.DEFINE_bool("smoke", False, "30-step runs (checks the plumbing)")
flags.DEFINE_float(
    "train_fraction",
    1.0,
    "< 1: no sweep; scratch vs distilled at --T/--alpha with this class-stratified share of "
    "the student's training labels (the teacher keeps its full-data run)",
)
flags.DEFINE_float("T", 2.0, "temperature with --train_fraction < 1")
flags.DEFINE_float("alpha", 0.5, "α with --train_fraction < 1")
FLAGS = flags.FLAGS
# (T, α) cells of the seed-0 sweep; α = 0.5 only at T = 2 (the CPU budget: each distilled run costs ~5 min on the
# shared cores, the teacher's forward pass dominating)
CELLS = ((2.0, 0.5), (2.0, 0.9), (4.0, 0.9), (8.0, 0.9))


def main(argv):
    del argv
    smoke = ",smoke" if FLAGS.smoke else ""
    out = {"command": " ".join(sys.argv), "runs": {}}
    if os.path.exists(FLAGS.out) and not FLAGS.smoke:  # finished runs of an interrupted invocation are kept
        with open(FLAGS.out) as f:
            out["runs"] = json.load(f).get("runs", {})

    def run(name: str, arg: str, seed: int = 0, fraction: float = 1.0) -> dict:
        if name in out["runs"] and out["runs"][name]["arg"] == arg and out["runs"][name]["seed"] == seed:
            return out["runs"][name]
        c = get_config(arg + smoke)
        c.seed = seed
        c.data.train_fraction = fraction
        workdir = os.path.join(FLAGS.workdir, name)
        t0 = time.time()
        final = train_and_evaluate(c, workdir, devices=jax.devices()[:1])
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            lines = [json.loads(line) for line in f]
        secs = [x["train/steps_per_sec"] for x in lines if "train/steps_per_sec" in x]
        row = {
            "arg": arg,
            "seed": seed,
            "val_accuracy": final["eval/val/accuracy"],
            "test_accuracy": final["eval/test/accuracy"],
            "test_loss": final["eval/test/loss"],
            "steps": c.train.steps,
            "train_fraction": fraction,
            "median_steps_per_sec": float(np.median(secs)) if secs else None,
            "wall_s_this_invocation": time.time() - t0,
        }
        out["runs"][name] = row
        print(name, row, flush=True)
        with open(FLAGS.out, "w") as f:
            json.dump(out, f, indent=1, default=float)
        return row

    teacher_dir = os.path.join(FLAGS.workdir, "teacher")
    run("teacher", "teacher")
    if FLAGS.train_fraction < 1:
        f, arg = FLAGS.train_fraction, f"distill,teacher_dir={teacher_dir},T={FLAGS.T},alpha={FLAGS.alpha}"
        for seed in range(FLAGS.seeds):
            run(f"scratch_f{f:g}_s{seed}", "student", seed, f)
            run(f"distill_T{FLAGS.T:g}_a{FLAGS.alpha:g}_f{f:g}_s{seed}", arg, seed, f)
        out["chosen"] = {"temperature": FLAGS.T, "alpha": FLAGS.alpha, "by": "the full-data sweep (flags)"}
        summarize(out, f"scratch_f{f:g}", f"distill_T{FLAGS.T:g}_a{FLAGS.alpha:g}_f{f:g}")
        return
    run("scratch_s0", "student")
    cells = list(CELLS)
    sweep = {}
    for t, a in cells:
        sweep[(t, a)] = run(f"distill_T{t:g}_a{a:g}_s0", f"distill,teacher_dir={teacher_dir},T={t},alpha={a}")
    best = max(cells, key=lambda k: sweep[k]["val_accuracy"])  # max keeps the first of equal values
    out["chosen"] = {"temperature": best[0], "alpha": best[1], "by": "validation accuracy, seed 0"}
    for seed in range(1, FLAGS.seeds):
        run(f"scratch_s{seed}", "student", seed)
        run(
            f"distill_T{best[0]:g}_a{best[1]:g}_s{seed}",
            f"distill,teacher_dir={teacher_dir},T={best[0]},alpha={best[1]}",
            seed,
        )

    summarize(out, "scratch", f"distill_T{best[0]:g}_a{best[1]:g}")


def summarize(out: dict, scratch: str, distilled: str) -> None:
    """Mean ± sample std over the seeds of `<prefix>_s<seed>` runs, the paired gains; writes --out."""

    def stats(prefix: str) -> dict:
        rows = [out["runs"][f"{prefix}_s{s}"] for s in range(FLAGS.seeds)]
        summary = {"n": len(rows), "seeds": list(range(FLAGS.seeds))}
        for k in ("val_accuracy", "test_accuracy"):
            v = np.array([r[k] for r in rows])
            std = float(v.std(ddof=1)) if len(v) > 1 else None
            summary[k] = {"mean": float(v.mean()), "std": std, "values": v.tolist()}
        return summary

    out["summary"] = {"teacher": out["runs"]["teacher"], "scratch": stats(scratch), "distilled": stats(distilled)}
    d, s = (np.array(out["summary"][k]["test_accuracy"]["values"]) for k in ("distilled", "scratch"))
    out["summary"]["paired_test_gain"] = {"values": (d - s).tolist(), "mean": float((d - s).mean())}
    out["environment"] = environment()
    with open(FLAGS.out, "w") as f:
        json.dump(out, f, indent=1, default=float)
    print(json.dumps(out["summary"], indent=1, default=float))


if __name__ == "__main__":
    app.run(main)
