"""The recsys study's tables: jaxdl's runs (from `jaxdl.ablate` workdirs) beside the peers' JSON and the baselines
computed here, written to results.csv / results.json / results.md (the README's tables) in this folder
(commands: README.md).

    python experiments/recsys/study.py --mf=/tmp/runs/recsys_mf --bpr=/tmp/runs/recsys_bpr \
        --neumf=/tmp/runs/recsys_neumf --deepfm=/tmp/runs/recsys_deepfm --out=experiments/recsys

Rating table: RMSE / MAE per fold u1..u5 (jaxdl MF: mean over its seeds; Surprise SVD / SVD++: mean over its
seeds), then mean ± sample std (ddof=1) over the n = 5 fold means. Baselines on the same folds: the global mean and
each item's train mean. Top-K table (leave-one-out test users, n = 943): HR@10 / NDCG@10 / MRR sampled (99 stored
negatives) and full ranking, coverage@10, mean ± sample std over seeds (n stated); RecBole's models scored by the
same metric code on the same negatives; the popularity baseline (train interaction counts) is deterministic.
"""

import csv
import datetime
import glob
import json
import os
import platform

import numpy as np
from absl import app, flags

from jaxdl.data import movielens as ml
from jaxdl.evaluators import _recsys_metrics as M

HERE = os.path.dirname(os.path.abspath(__file__))
flags.DEFINE_string("mf", "/tmp/runs/recsys_mf", "jaxdl.ablate workdir of config.py:mf")
flags.DEFINE_string("bpr", "/tmp/runs/recsys_bpr", "jaxdl.ablate workdir of config.py:bpr")
flags.DEFINE_string("neumf", "/tmp/runs/recsys_neumf", "jaxdl.ablate workdir of config.py:neumf")
flags.DEFINE_string("two_tower", "/tmp/runs/recsys_two_tower", "jaxdl.ablate workdir of config.py:two_tower")
flags.DEFINE_string("deepfm", "/tmp/runs/recsys_deepfm", "jaxdl.ablate workdir of config.py:deepfm")
flags.DEFINE_string("peer_dir", os.path.join(HERE, "peer"), "folder with surprise_*.json and recbole.json")
flags.DEFINE_string("out", HERE, "where results.csv / results.json go")
FLAGS = flags.FLAGS
TOPK = ("hr10_sampled", "ndcg10_sampled", "mrr_sampled", "hr10_full", "ndcg10_full", "mrr_full", "coverage10")


def runs(workdir: str) -> list[dict]:
    out = []
    for path in sorted(glob.glob(os.path.join(workdir, "*", "seed_*", "result.json"))):
        with open(path) as f:
            r = json.load(f)
        out.append(dict(cell=r["cell"], seed=r["seed"], seconds=r["seconds"], **r["metrics"]))
    return out


def stats(values) -> tuple[float, float, int]:
    v = np.asarray(list(values), np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan"), len(v)


def rating_rows(data) -> list[dict]:
    rows = []
    ours = runs(FLAGS.mf)
    folds = range(1, 6)
    per_fold = {
        "jaxdl MF (biased, dim 64)": {k: [r for r in ours if r["cell"] == f"u{k}"] for k in folds},
    }
    for path in sorted(glob.glob(os.path.join(FLAGS.peer_dir, "surprise_*.json"))):
        with open(path) as f:
            recs = json.load(f)["records"]
        for algo in sorted({r["algo"] for r in recs}):
            name = {"svd": "Surprise SVD", "svdpp": "Surprise SVD++"}[algo]
            per_fold[name] = {
                k: [
                    dict(r, **{"eval/rmse": r["rmse"], "eval/mae": r["mae"]})
                    for r in recs
                    if r["algo"] == algo and r["fold"] == k
                ]
                for k in folds
            }
    for name, by_fold in per_fold.items():
        if not all(by_fold[k] for k in folds):
            continue
        seeds = sorted({r["seed"] for k in folds for r in by_fold[k]})
        row = dict(table="rating", method=name, seeds=",".join(map(str, seeds)))
        for metric in ("rmse", "mae"):
            means = [np.mean([r[f"eval/{metric}"] for r in by_fold[k]]) for k in folds]
            row |= {f"{metric}_u{k}": round(float(m), 4) for k, m in zip(folds, means, strict=True)}
            row[f"{metric}_mean"], row[f"{metric}_std"], row["n_folds"] = stats(means)
        rows.append(row)
    for name, predict in (("global mean", "global"), ("item mean", "item")):
        row = dict(table="rating", method=f"baseline: {name}", seeds="-")
        values = {"rmse": [], "mae": []}
        for k in folds:
            train, test = ml.rating_fold(data, k)
            mu = data.rating[train].mean()
            if predict == "global":
                pred = np.full(len(test), mu)
            else:
                sums = np.bincount(data.item[train], data.rating[train], data.num_items)
                counts = np.bincount(data.item[train], minlength=data.num_items)
                pred = np.where(counts > 0, sums / np.maximum(counts, 1), mu)[data.item[test]]
            values["rmse"].append(M.rmse(pred, data.rating[test]))
            values["mae"].append(M.mae(pred, data.rating[test]))
        for metric, v in values.items():
            row |= {f"{metric}_u{k}": round(x, 4) for k, x in zip(folds, v, strict=True)}
            row[f"{metric}_mean"], row[f"{metric}_std"], row["n_folds"] = stats(v)
        rows.append(row)
    return rows


def popularity(data) -> dict:
    train, valid, test = ml.leave_one_out(data)
    pop = np.bincount(data.item[train], minlength=data.num_items).astype(np.float64)
    users, items = data.user[test], data.item[test]
    neg = ml.sample_negatives(data, users, seed=ml.NEGATIVES_SEED + 1)
    sampled = M.ranks(np.concatenate([pop[items][:, None], pop[neg]], 1), np.zeros(len(users), np.int64))
    seen = np.zeros((data.num_users, data.num_items), bool)
    seen[data.user[train], data.item[train]] = True
    seen[data.user[valid], data.item[valid]] = True
    scores = np.tile(pop, (len(users), 1))
    full = M.ranks(scores, items, ~seen[users])
    top = M.top_k(scores, 10, ~seen[users])
    return dict(
        hr10_sampled=M.hit_rate(sampled, 10).mean(), ndcg10_sampled=M.ndcg(sampled, 10).mean(),
        mrr_sampled=M.mrr(sampled).mean(), hr10_full=M.hit_rate(full, 10).mean(), ndcg10_full=M.ndcg(full, 10).mean(),
        mrr_full=M.mrr(full).mean(), coverage10=M.coverage(top, data.num_items),
    )  # fmt: skip


def topk_rows(data) -> list[dict]:
    rows = []
    named = (("jaxdl BPR-MF", FLAGS.bpr), ("jaxdl NeuMF", FLAGS.neumf), ("jaxdl DeepFM", FLAGS.deepfm),
             ("jaxdl two-tower + logQ", FLAGS.two_tower))  # fmt: skip
    for name, workdir in named:
        rs = runs(workdir)
        if rs:
            row = dict(table="topk", method=name, seeds=",".join(str(r["seed"]) for r in rs))
            for m in TOPK:
                row[f"{m}_mean"], row[f"{m}_std"], row["n_seeds"] = stats(r[f"eval/{m}"] for r in rs)
            rows.append(row)
    path = os.path.join(FLAGS.peer_dir, "recbole.json")
    if os.path.exists(path):
        with open(path) as f:
            recs = json.load(f)["records"]
        for model in sorted({r["model"] for r in recs}):
            rs = [r for r in recs if r["model"] == model]
            row = dict(table="topk", method=f"RecBole {model}", seeds=",".join(str(r["seed"]) for r in rs))
            for m in TOPK:
                row[f"{m}_mean"], row[f"{m}_std"], row["n_seeds"] = stats(r[m] for r in rs)
            own = [r["recbole_full"] for r in rs]
            row["recbole_own_hit@10_mean"], row["recbole_own_hit@10_std"], _ = stats(o["hit@10"] for o in own)
            row["recbole_own_ndcg@10_mean"], row["recbole_own_ndcg@10_std"], _ = stats(o["ndcg@10"] for o in own)
            rows.append(row)
    pop = popularity(data)
    rows.append(dict(table="topk", method="baseline: popularity", seeds="-", n_seeds=1,
                     **{f"{m}_mean": float(v) for m, v in pop.items()}))  # fmt: skip
    return rows


def environment() -> dict:
    import flax
    import jax
    import optax

    return dict(
        date=datetime.date.today().isoformat(), device=f"{os.cpu_count()} CPU cores ({platform.machine()}), no accelerator",
        python=platform.python_version(), jax=jax.__version__, flax=flax.__version__, optax=optax.__version__,
        data="MovieLens-100k from recbole 1.2.1's dataset_example (jaxdl/data/movielens.py)",
    )  # fmt: skip


def _pm(mean, std, digits=4) -> str:
    return f"{mean:.{digits}f}" if std is None or np.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(rows: list[dict]) -> str:
    """The README's two tables (mean ± sample std; n stated)."""
    out = ["| method | RMSE u1 | u2 | u3 | u4 | u5 | RMSE mean ± std (n = 5 folds) | MAE mean ± std | seeds |"]
    out.append("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["table"] == "rating":
            folds = " | ".join(f"{r[f'rmse_u{k}']:.4f}" for k in range(1, 6))
            out.append(f"| {r['method']} | {folds} | {_pm(r['rmse_mean'], r['rmse_std'])} | "
                       f"{_pm(r['mae_mean'], r['mae_std'])} | {r['seeds']} |")  # fmt: skip
    out += ["", "| method | n | HR@10 sampled | NDCG@10 sampled | HR@10 full | NDCG@10 full | MRR full | coverage@10 |"]
    out.append("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["table"] == "topk":
            cells = [_pm(r[f"{m}_mean"], r.get(f"{m}_std")) for m in
                     ("hr10_sampled", "ndcg10_sampled", "hr10_full", "ndcg10_full", "mrr_full", "coverage10")]  # fmt: skip
            out.append(f"| {r['method']} | {r['n_seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main(_):
    data = ml.load_raw()
    rows = rating_rows(data) + topk_rows(data)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(os.path.join(FLAGS.out, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows([{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in rows])
    per_run = {
        "mf": runs(FLAGS.mf),
        "bpr": runs(FLAGS.bpr),
        "neumf": runs(FLAGS.neumf),
        "two_tower": runs(FLAGS.two_tower),
        "deepfm": runs(FLAGS.deepfm),
    }
    with open(os.path.join(FLAGS.out, "results.json"), "w") as f:
        json.dump(dict(environment=environment(), rows=rows, jaxdl_runs=per_run), f, indent=1)
    with open(os.path.join(FLAGS.out, "results.md"), "w") as f:
        f.write(markdown(rows))
    for r in rows:
        if r["table"] == "rating":
            print(
                f"{r['method']:28s} RMSE {r['rmse_mean']:.4f} ± {r['rmse_std']:.4f}  MAE {r['mae_mean']:.4f} (n={r['n_folds']} folds)"
            )
        else:
            print(f"{r['method']:28s} " + "  ".join(f"{m} {r[f'{m}_mean']:.4f}" for m in TOPK) + f" (n={r['n_seeds']})")


if __name__ == "__main__":
    app.run(main)
