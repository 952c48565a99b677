"""Checks that the side-feature files `run_recbole_deepfm.py` wrote for RecBole hold exactly jaxdl DeepFM's fields:
per user the age decade, gender and occupation of `jaxdl.data.movielens`; per item the year bucket and genres of
`two_tower.movielens_catalogue`; and the train/valid/test rows of the leave-one-out export. Run in the project venv
(it imports jaxdl) after run_recbole_deepfm.py:

    python experiments/recsys/peer/check_context_files.py --splits=/tmp/recsys_splits

Exits non-zero naming the first mismatching user / item / row.
"""

import argparse
import os

import numpy as np

from jaxdl.data import movielens as ml
from jaxdl.models.recsys.two_tower import AGE_BUCKETS, movielens_catalogue


def rows(path: str) -> list[list[str]]:
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f.readlines()[1:]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", default="/tmp/recsys_splits")
    args = ap.parse_args()
    ctx = os.path.join(args.splits, "ml-100k-ctx", "ml-100k-ctx")
    d = ml.load_raw()
    genres, year = movielens_catalogue(d.num_items)
    items = rows(ctx + ".item")
    if len(items) != d.num_items:
        raise SystemExit(f"{ctx}.item: {len(items)} items, expected {d.num_items}")
    for iid, bucket, names in items:
        i = int(iid)
        ids = sorted(ml.GENRES.index(g) for g in names.split())
        if int(bucket) != year[i] or ids != list(np.flatnonzero(genres[i])):
            raise SystemExit(f"item {i}: RecBole file year bucket {bucket} genres {names!r}, jaxdl {year[i]} {ids}")
    users = rows(ctx + ".user")
    if len(users) != d.num_users:
        raise SystemExit(f"{ctx}.user: {len(users)} users, expected {d.num_users}")
    for uid, decade, gender, occupation in users:
        u = int(uid)
        want = (min(d.age[u] // 10, AGE_BUCKETS - 1), "MF"[1 - d.gender[u]], ml.OCCUPATIONS[d.occupation[u]])
        if (int(decade), gender, occupation) != want:
            raise SystemExit(f"user {u}: RecBole file {(decade, gender, occupation)}, jaxdl {want}")
    loo = os.path.join(args.splits, "ml-100k-loo", "ml-100k-loo")
    for split in ("train", "valid", "test"):
        if rows(f"{ctx}.{split}.inter") != [r[:2] for r in rows(f"{loo}.{split}.inter")]:
            raise SystemExit(f"{ctx}.{split}.inter: rows differ from {loo}.{split}.inter (user_id, item_id)")
    print(f"{d.num_users} users, {d.num_items} items and the train/valid/test rows match jaxdl's DeepFM fields")


if __name__ == "__main__":
    main()
