"""Collects the LightGCN study into committed files: jaxdl's runs (experiments/structured/lightgcn.py, one workdir
per seed) beside RecBole's LightGCN (peer_lightgcn.json from experiments/structured/peer_lightgcn.py).

    python experiments/structured/lightgcn_study.py --runs=/tmp/runs/lightgcn \
        --peer=experiments/structured/peer_lightgcn.json

Reads each RUNS/seed_<s>/metrics.jsonl (the last eval record: test, and valid under eval/valid/) and
environment.json; writes experiments/structured/lightgcn_results.csv (one row per system and seed; test metrics)
and lightgcn_summary.json (mean and sample std over seeds, n stated, with both environments and the date).
"""

import argparse
import csv
import datetime
import glob
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
METRICS = ("hr10_sampled", "ndcg10_sampled", "mrr_sampled", "hr10_full", "ndcg10_full", "mrr_full", "coverage10")


def jaxdl_rows(runs: str) -> tuple[list[dict], dict]:
    rows, env = [], {}
    for folder in sorted(glob.glob(os.path.join(runs, "seed_*"))):
        with open(os.path.join(folder, "metrics.jsonl")) as f:
            records = [json.loads(line) for line in f if line.strip()]
        evals = [r for r in records if "eval/hr10_full" in r]
        if not evals:
            raise ValueError(f"{folder}: no eval record in metrics.jsonl (the run did not finish)")
        last = evals[-1]
        steps = [r["train/steps_per_sec"] for r in records if "train/steps_per_sec" in r]
        with open(os.path.join(folder, "config.json")) as f:
            config = json.load(f)
        with open(os.path.join(folder, "environment.json")) as f:
            env = json.load(f)
        row = dict(system="jaxdl lightgcn", seed=config["seed"], step=last["step"])
        row |= {m: last[f"eval/{m}"] for m in METRICS}
        row |= {f"valid_{m}": last[f"eval/valid/{m}"] for m in ("hr10_full", "ndcg10_full")}
        row["steps_per_sec"] = round(statistics.median(steps), 2) if steps else None
        rows.append(row)
    return rows, env


def peer_rows(path: str) -> tuple[list[dict], dict]:
    with open(path) as f:
        peer = json.load(f)
    rows = []
    for r in sorted(peer["records"], key=lambda r: r["seed"]):
        row = dict(system="RecBole LightGCN", seed=r["seed"], step=r["epochs"])
        row |= {m: r[m] for m in METRICS}
        row["recbole_own_hit10_full"], row["recbole_own_ndcg10_full"] = (
            r["recbole_full"]["hit@10"],
            r["recbole_full"]["ndcg@10"],
        )
        row["fit_seconds"] = r["fit_seconds"]
        rows.append(row)
    return rows, peer["environment"] | {"params": peer.get("params")}


def summary(rows: list[dict]) -> dict:
    out = {}
    for system in dict.fromkeys(r["system"] for r in rows):
        mine = [r for r in rows if r["system"] == system]
        out[system] = {"n_seeds": len(mine), "seeds": [r["seed"] for r in mine]}
        for m in METRICS:
            values = [r[m] for r in mine]
            out[system][m] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else None,
            }
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="/tmp/runs/lightgcn")
    ap.add_argument("--peer", default=os.path.join(HERE, "peer_lightgcn.json"))
    ap.add_argument("--out", default=HERE)
    args = ap.parse_args()
    ours, env = jaxdl_rows(args.runs)
    theirs, peer_env = peer_rows(args.peer)
    rows = ours + theirs
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(os.path.join(args.out, "lightgcn_results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    result = dict(
        date=datetime.date.today().isoformat(),
        split="movielens_loo test (943 users; sampled: 99 stored negatives; full: all items minus train + valid)",
        summary=summary(rows),
        jaxdl_environment=dict(
            python=env.get("python"),
            packages=env.get("packages"),
            backend=env.get("backend"),
            git=env.get("git_commit"),
        ),
        peer_environment=peer_env,
    )
    with open(os.path.join(args.out, "lightgcn_summary.json"), "w") as f:
        json.dump(result, f, indent=1)
    for system, s in result["summary"].items():
        cells = [
            f"{m} {s[m]['mean']:.4f}" + (f" ± {s[m]['std']:.4f}" if s[m]["std"] is not None else "") for m in METRICS
        ]
        print(system, f"(n={s['n_seeds']})", "; ".join(cells))


if __name__ == "__main__":
    main()
