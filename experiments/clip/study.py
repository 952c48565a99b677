"""Runs the CLIP arms of config.py (InfoNCE, SigLIP) x seeds, one process each, one after another, then writes
results.json and results.csv beside this file: every final evaluator metric (zero-shot seen / held-out / all with
full and name-only prompts, linear probe, retrieval recall@1/5), the median train step time and wall seconds.

  python experiments/clip/study.py --workdir=/tmp/runs --losses=infonce,siglip --seeds=0 [--steps=400]
summary.csv (and results.json's "summary"): mean and sample std over the seeds of every metric, per loss.
A run whose workdir already holds its final metrics is collected, not rerun (--collect: never train anything).
Evaluators of config.py that a finished run lacks (e.g. `zero_shot_desc`, added after the first InfoNCE run) are
run on its final checkpoint with `jaxdl.evaluate`'s machinery and stored in its `extra_evals.json`.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

FINAL_KEY = "eval/zero_shot/seen"


def add_missing_evals(workdir: str, loss: str) -> None:
    """Runs the evaluators of config.py:<loss> whose metrics the run at `workdir` lacks, on its last checkpoint."""
    from experiments.clip.config import get_config
    from jaxdl import evaluators
    from jaxdl.state import restore_run
    from jaxdl.train import eval_context

    done = _final(workdir, extra=True) or {}
    wanted = get_config(loss).evals
    missing = [n for n in wanted if not any(k.startswith(f"{n}/") for k in done)]
    if not missing:
        return
    run = restore_run(workdir, None, None)
    specs = {n: dict(wanted[n]) for n in missing}
    ctx = eval_context(
        run.config, run.task, run.graphdef, run.ds_info, run.mesh, run.rules, run.state_sharding, workdir
    )
    results = {"step": run.step}
    for name, ev in evaluators.make_all(specs, ctx).items():
        results |= {evaluators.metric_key(name, k): v for k, v in ev.evaluate(run.state).items()}
    path = os.path.join(workdir, "extra_evals.json")
    old = {}
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
    with open(path, "w") as f:
        json.dump(old | results, f, indent=1)


def _final(workdir: str, extra: bool = True) -> dict | None:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    finals = [r for r in rows if FINAL_KEY in r]
    if not finals:
        return None
    step_ms = sorted(r["train/step_ms"] for r in rows if "train/step_ms" in r)
    metrics = dict(finals[-1])
    extra_path = os.path.join(workdir, "extra_evals.json")
    if extra and os.path.exists(extra_path):
        with open(extra_path) as f:
            metrics |= {k: v for k, v in json.load(f).items() if k.startswith("eval/")}
    out = {k.removeprefix("eval/"): round(v, 4) for k, v in metrics.items() if k.startswith("eval/")}
    return {"step": finals[-1]["step"], "median_step_ms": round(step_ms[len(step_ms) // 2], 1), **out}


def run(loss: str, seed: int, steps: int, root: str, collect: bool) -> dict:
    workdir = os.path.join(root, f"clip_{loss}_s{seed}")
    wall = None
    if _final(workdir) is None:
        if collect:
            raise SystemExit(f"{workdir} has no final metrics ({FINAL_KEY}); run without --collect")
        cmd = [sys.executable, "-m", "jaxdl.main", f"--config={HERE}/config.py:{loss},seed={seed},steps={steps}"]
        start = time.time()
        proc = subprocess.run([*cmd, f"--workdir={workdir}"], cwd=ROOT, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"clip {loss} seed {seed} failed:\n{proc.stderr[-3000:]}")
        wall = round(time.time() - start, 1)
    if wall is None:  # trained earlier: first file written (config.json) to the last metrics line, from file times
        first = os.path.getmtime(os.path.join(workdir, "config.json"))
        wall = round(os.path.getmtime(os.path.join(workdir, "metrics.jsonl")) - first, 1)
    add_missing_evals(workdir, loss)  # finished runs too
    with open(os.path.join(workdir, "environment.json")) as f:
        env = json.load(f)
    return {
        "loss": loss,
        "seed": seed,
        **_final(workdir),
        "wall_s": wall,
        "started_utc": datetime.datetime.fromtimestamp(
            os.path.getmtime(os.path.join(workdir, "config.json")), datetime.UTC
        ).isoformat(timespec="seconds"),
        "jax": env["packages"]["jax"],
        "git_commit": env["git_commit"],
    }


def summarize(runs: list[dict]) -> list[dict]:
    """Per loss and metric: mean and sample standard deviation (ddof 1; None for n = 1) over the seeds."""
    import statistics

    rows = []
    for loss in dict.fromkeys(r["loss"] for r in runs):
        group = [r for r in runs if r["loss"] == loss]
        metrics = [k for k in group[0] if "/" in k or k == "median_step_ms"]
        for k in metrics:
            vals = [r[k] for r in group if r.get(k) is not None]
            std = round(statistics.stdev(vals), 4) if len(vals) > 1 else None
            seeds = " ".join(str(r["seed"]) for r in group)
            rows.append(
                dict(loss=loss, metric=k, n=len(vals), mean=round(statistics.fmean(vals), 4), std=std, seeds=seeds)
            )
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", required=True)
    p.add_argument("--losses", default="infonce,siglip")
    p.add_argument("--seeds", default="0")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--runs", default="", help="e.g. infonce:0,infonce:1,siglip:0 (replaces losses x seeds)")
    p.add_argument("--collect", action="store_true")
    a = p.parse_args()
    load_start = os.getloadavg()
    pairs = [(loss, int(s)) for loss in a.losses.split(",") for s in a.seeds.split(",")]
    if a.runs:  # explicit loss:seed list instead of the product
        pairs = [(r.split(":")[0], int(r.split(":")[1])) for r in a.runs.split(",")]
    runs = [run(loss, seed, a.steps, a.workdir, a.collect) for loss, seed in pairs]
    meta = {
        "command": " ".join(sys.argv),
        "device": f"{platform.machine()} CPU, {os.cpu_count()} cores, shared with other jobs",
        "load_average_1_5_15_min_during_this_call": {"start": load_start, "end": os.getloadavg()},
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
    }
    summary = summarize(runs)
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump({"meta": meta, "runs": runs, "summary": summary}, f, indent=1)
    with open(os.path.join(HERE, "summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["loss", "metric", "n", "mean", "std", "seeds"])
        w.writeheader()
        w.writerows(summary)
    keys = list(dict.fromkeys(k for r in runs for k in r))
    with open(os.path.join(HERE, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(runs)
    for r in runs:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
