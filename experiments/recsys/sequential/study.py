"""Collects the sequential-recommender runs (`python -m jaxdl.ablate --config=experiments/recsys/sequential/
config.py:<model> --workdir=DIR --seeds=0,1,2`) into results.json + results.csv: per model, every seed's test and
valid metrics, mean ± sample std (ddof 1) with n, run seconds, the environment and date.

    python experiments/recsys/sequential/study.py --sasrec=/tmp/runs/seq_sasrec --out=experiments/recsys/sequential
    (optionally --bert4rec=DIR, and --extra="LABEL=DIR" for more run sets, e.g. a longer BERT4Rec)
"""

import argparse
import csv
import datetime
import glob
import json
import os

import numpy as np

METRICS = ("hr10_sampled", "ndcg10_sampled", "mrr_sampled", "hr10_full", "ndcg10_full", "mrr_full", "coverage10")


def collect(workdir: str) -> dict:
    """{seeds, runs: [{seed, metrics, seconds}], mean, std, n, environment} of the finished runs in `workdir`."""
    paths = sorted(glob.glob(os.path.join(workdir, "*", "seed_*", "result.json")))
    if not paths:
        raise FileNotFoundError(f"no finished runs (*/seed_*/result.json) under {workdir}")
    runs = []
    for p in paths:
        with open(p) as f:
            r = json.load(f)
        runs.append(dict(seed=r["seed"], seconds=r["seconds"], metrics=r["metrics"]))
    with open(os.path.join(os.path.dirname(paths[0]), "environment.json")) as f:
        env = json.load(f)
    with open(os.path.join(os.path.dirname(paths[0]), "config.json")) as f:
        config = json.load(f)
    out = dict(workdir=workdir, n=len(runs), seeds=[r["seed"] for r in runs], runs=runs, mean={}, std={})
    for split in ("", "valid/"):
        for m in METRICS:
            values = np.array([r["metrics"][f"eval/{split}{m}"] for r in runs])
            key = f"{split.rstrip('/') + '_' if split else ''}{m}"
            out["mean"][key] = float(values.mean())
            out["std"][key] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    out["seconds_per_run"] = [r["seconds"] for r in runs]
    out["environment"] = {k: env[k] for k in ("python", "packages", "backend", "devices", "git_commit")}
    out["config"] = {k: config[k] for k in ("model", "task", "optim", "data", "train") if k in config}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sasrec", required=True)
    ap.add_argument("--bert4rec", default="")
    ap.add_argument("--extra", action="append", default=[], help="LABEL=DIR: another set of runs (e.g. longer)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    models = {"SASRec (next_items, all positions)": collect(args.sasrec)}
    if args.bert4rec:
        models["BERT4Rec (masked_items)"] = collect(args.bert4rec)
    for spec in args.extra:
        label, sep, workdir = spec.partition("=")
        if not sep or not label or not workdir:
            raise ValueError(f"--extra={spec!r} must be LABEL=DIR")
        models[label] = collect(workdir)
    result = dict(
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        device="2-core x86_64 CPU, no accelerator, shared with other jobs while these ran",
        split="movielens_loo test (943 users): sampled = positive among 99 stored negatives; full = all items "
        "except the user's train items and the validation item",
        models=models,
    )  # fmt: skip
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(args.out, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "n", "seeds", *[f"{m}_{s}" for m in METRICS for s in ("mean", "std")]])
        for name, r in models.items():
            cells = [f"{r[s][m]:.4f}" for m in METRICS for s in ("mean", "std")]
            w.writerow([name, r["n"], ",".join(map(str, r["seeds"])), *cells])
    print(f"wrote {args.out}/results.json, results.csv")


if __name__ == "__main__":
    main()
