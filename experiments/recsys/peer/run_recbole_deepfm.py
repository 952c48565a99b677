"""RecBole's DeepFM on the exported leave-one-out split, with the same seven fields as jaxdl's `deepfm`: the peer of
experiments/recsys/config.py:deepfm.

Runs in the side virtualenv (experiments/recsys/README.md has the install commands), after
`python experiments/recsys/export_splits.py --out=/tmp/recsys_splits` in the project venv:

    /tmp/peer_recsys/bin/python experiments/recsys/peer/run_recbole_deepfm.py --splits=/tmp/recsys_splits \
        --seeds=0,1,2 --out=experiments/recsys/peer/recbole_deepfm.json

RecBole's context-aware models embed every loaded token field, so the side features are written as RecBole atomic
files in `<splits>/ml-100k-ctx/` (the train/valid/test rows copied from `ml-100k-loo`, user_id and item_id only, so
neither rating nor timestamp becomes a feature; `.user` and `.item` built from the MovieLens-100k files inside the
installed recbole wheel, bucketed exactly as jaxdl's DeepFM does: age decade min(age // 10, 9), gender, occupation;
release-year bucket clip((year - 1920) // 5 + 1, 1, 17), 0 unknown, the year read from the title where the
release_year column is empty, as `jaxdl.data.movielens.read_items` does; genres as a token sequence, mean-pooled by
RecBole). The fields are then jaxdl's: user, age, gender, occupation, item, genres bag (mean), year bucket.

Hyperparameters match config.py:deepfm: embedding 16, MLP 128-64, no dropout, 10 epochs, batch 256, Adam 1e-3, 4
negatives per positive, log loss (RecBole: sigmoid + BCE on the label field it adds to sampled negatives). What
differs: RecBole draws the negatives among the user's non-interacted items (jaxdl's row: uniform over the
catalogue), initializes with xavier-normal (jaxdl: N(0, 0.01) tables), and its MLP has no batch norm either. The
trained model scores every (user, item) pair with `predict` on RecBole's own feature join and is ranked by jaxdl's
metric code on the stored negatives and `seen` masks, as `run_recbole.py` does; RecBole's own full-ranking test
metrics (its `predict`-per-item fallback for context models) are kept beside them as a cross-check.
"""

import argparse
import json
import os
import re
import tempfile

import numpy as np
import recbole
import torch
from recbole.data.interaction import Interaction
from recbole.model.context_aware_recommender import DeepFM
from run_recbole import evaluate, fit, load_metrics, recbole_config, write

NUM_ITEMS = 1682
PARAMS = dict(embedding_size=16, mlp_hidden_size=[128, 64], dropout_prob=0.0, epochs=10, train_batch_size=256,
              learning_rate=1e-3, train_neg_sample_args=dict(distribution="uniform", sample_num=4))  # fmt: skip
AGE_BUCKETS, YEAR_BUCKETS = 10, 18  # jaxdl.models.recsys.two_tower


def raw_files() -> str:
    folder = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")
    for ext in ("user", "item"):
        if not os.path.exists(os.path.join(folder, f"ml-100k.{ext}")):
            raise FileNotFoundError(f"{folder}/ml-100k.{ext} missing: reinstall recbole==1.2.1 in this venv")
    return folder


def _rows(path: str, header: str) -> list[list[str]]:
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if lines[0] != header:
        raise ValueError(f"{path}: header {lines[0]!r}, expected {header!r}")
    return [line.split("\t") for line in lines[1:] if line]


def write_context_files(splits: str) -> str:
    """Writes <splits>/ml-100k-ctx/ml-100k-ctx.{train,valid,test,user,item}; returns the dataset name."""
    loo, ctx = os.path.join(splits, "ml-100k-loo"), os.path.join(splits, "ml-100k-ctx")
    os.makedirs(ctx, exist_ok=True)
    for name in ("train", "valid", "test"):
        rows = _rows(os.path.join(loo, f"ml-100k-loo.{name}.inter"),
                     "user_id:token\titem_id:token\trating:float\ttimestamp:float")  # fmt: skip
        with open(os.path.join(ctx, f"ml-100k-ctx.{name}.inter"), "w") as f:
            f.write("user_id:token\titem_id:token\n")
            f.writelines(f"{r[0]}\t{r[1]}\n" for r in rows)
    raw = raw_files()
    users = _rows(os.path.join(raw, "ml-100k.user"),
                  "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token")  # fmt: skip
    with open(os.path.join(ctx, "ml-100k-ctx.user"), "w") as f:
        f.write("user_id:token\tage_decade:token\tgender:token\toccupation:token\n")
        for uid, age, gender, occupation, _ in users:
            f.write(f"{int(uid) - 1}\t{min(int(age) // 10, AGE_BUCKETS - 1)}\t{gender}\t{occupation}\n")
    items = _rows(os.path.join(raw, "ml-100k.item"),
                  "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq")  # fmt: skip
    if len(items) != NUM_ITEMS:
        raise ValueError(f"{raw}/ml-100k.item has {len(items)} items, expected {NUM_ITEMS}")
    with open(os.path.join(ctx, "ml-100k-ctx.item"), "w") as f:
        f.write("item_id:token\tyear_bucket:token\tgenre:token_seq\n")
        for iid, title, year, genres in items:
            in_title = re.search(r"\((\d{4})\)\s*$", title)
            y = int(year) if year.isdigit() else int(in_title.group(1)) if in_title else 0
            bucket = min(max((y - 1920) // 5 + 1, 1), YEAR_BUCKETS - 1) if y > 0 else 0
            f.write(f"{int(iid) - 1}\t{bucket}\t{genres}\n")
    return "ml-100k-ctx"


def pair_scores(model, dataset, users: np.ndarray) -> np.ndarray:
    """float [len(users), 1682]: `predict` on every (user, item) pair with RecBole's joined user/item features,
    rows in `users` order, columns in jaxdl's 0-based item order."""
    uid, iid = dataset.field2token_id["user_id"], dataset.field2token_id["item_id"]
    items = torch.tensor([iid[str(i)] for i in range(NUM_ITEMS)])
    out = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(users), 32):
            u = torch.tensor([uid[str(x)] for x in users[start : start + 32]])
            pairs = Interaction({"user_id": u.repeat_interleave(NUM_ITEMS), "item_id": items.repeat(len(u))})
            out.append(model.predict(dataset.join(pairs)).view(len(u), NUM_ITEMS).numpy())
    return np.concatenate(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", default="/tmp/recsys_splits")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=0, help="override the epochs (a quick check); 0: the table's")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    M = load_metrics()
    ev = np.load(os.path.join(args.splits, "loo_eval.npz"))
    torch.set_num_threads(1)
    name = write_context_files(args.splits)
    params = dict(PARAMS, epochs=args.epochs or PARAMS["epochs"])
    records = []
    if os.path.exists(args.out):
        with open(args.out) as f:
            records = json.load(f)["records"]
    for seed in [int(s) for s in args.seeds.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = recbole_config(args.splits, seed, tmp, params)
            cfg["load_col"] = {"inter": ["user_id", "item_id"], "user": ["user_id", "age_decade", "gender",
                               "occupation"], "item": ["item_id", "year_bucket", "genre"]}  # fmt: skip
            cfg["eval_args"] = dict(mode="full", order="RO", group_by="user")  # benchmark files: no re-split
            trainer, dataset, test_data, fit_s, own = fit(DeepFM, name, cfg, seed)
            scores = pair_scores(trainer.model, dataset, ev["test_user"])
            ours = evaluate(M, scores, ev["test_item"], ev["test_negatives"], ev["test_seen"])
            rec = dict(model="DeepFM", seed=seed, epochs=params["epochs"], fit_seconds=round(fit_s, 1),
                       fields=sorted(f for f in dataset.field2type if f != dataset.config["LABEL_FIELD"]),
                       recbole_full={k: float(v) for k, v in own.items()},
                       **{k: float(v) for k, v in ours.items()})  # fmt: skip
            print(rec, flush=True)
            records = [r for r in records if (r["model"], r["seed"]) != ("DeepFM", seed)] + [rec]
            write(args.out, records)


if __name__ == "__main__":
    main()
