"""Mean ± sample std (ddof 1) with n over seeds of RecBole peer runs (the JSON files `run_recbole.py` /
`run_recbole_deepfm.py` write), one row per (model, epochs): the peer rows of the recsys READMEs.

    python experiments/recsys/peer/summarize.py experiments/recsys/peer/recbole_sasrec.json \
        experiments/recsys/peer/recbole_deepfm.json --out=experiments/recsys/peer/recbole_peers

writes OUT.csv (every statistic, and RecBole's own full-ranking Hit@10 / NDCG@10 beside ours) and OUT.md (the
table rows). Needs only numpy (either venv).
"""

import argparse
import csv
import json

import numpy as np

METRICS = ("hr10_sampled", "ndcg10_sampled", "mrr_sampled", "hr10_full", "ndcg10_full", "mrr_full", "coverage10")
OWN = ("hit@10", "ndcg@10")


def stats(values) -> tuple[float, float, int]:
    v = np.asarray(list(values), float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan"), len(v)


def rows(paths: list[str]) -> list[dict]:
    out = []
    for path in paths:
        with open(path) as f:
            recs = json.load(f)["records"]
        for r in recs:
            if "epochs" not in r:
                raise ValueError(f"{path}: record {r['model']} seed {r['seed']} has no 'epochs'")
        for model, epochs in sorted({(r["model"], r["epochs"]) for r in recs}):
            rs = sorted((r for r in recs if (r["model"], r["epochs"]) == (model, epochs)), key=lambda r: r["seed"])
            row = dict(
                method=f"RecBole {model}", epochs=epochs, source=path, seeds=",".join(str(r["seed"]) for r in rs)
            )
            for m in METRICS:
                row[f"{m}_mean"], row[f"{m}_std"], row["n"] = stats(r[m] for r in rs)
            for m in OWN:
                row[f"recbole_own_{m}_mean"], row[f"recbole_own_{m}_std"], _ = stats(r["recbole_full"][m] for r in rs)
            row["fit_seconds"] = ",".join(str(r["fit_seconds"]) for r in rs)
            out.append(row)
    return out


def cell(row: dict, m: str) -> str:
    return f"{row[m + '_mean']:.4f}" + (f" ± {row[m + '_std']:.4f}" if row["n"] > 1 else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--out", required=True, help="OUT.csv and OUT.md are written")
    args = ap.parse_args()
    table = rows(args.paths)
    with open(args.out + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    with open(args.out + ".md", "w") as f:
        f.write("| method | epochs | n | " + " | ".join(METRICS) + " | RecBole's own Hit@10 / NDCG@10 |\n")
        f.write("|---" * (len(METRICS) + 4) + "|\n")
        for r in table:
            own = f"{cell(r, 'recbole_own_hit@10')} / {cell(r, 'recbole_own_ndcg@10')}"
            f.write(f"| {r['method']} | {r['epochs']} | {r['n']} | " + " | ".join(cell(r, m) for m in METRICS))
            f.write(f" | {own} |\n")
    print(open(args.out + ".md").read())


if __name__ == "__main__":
    main()
