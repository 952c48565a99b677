"""Writes the project's MovieLens-100k splits as files the peers read, so every peer trains and is scored on exactly
the rows jaxdl uses (`jaxdl.data.movielens`; the data are not committed: see its licence note).

    python experiments/recsys/export_splits.py --out=/tmp/recsys_splits

Writes, under --out:
  u{1..5}.base, u{1..5}.test       "user item rating timestamp" (1-based raw ids, tab-separated), the mku.sh folds
  ml-100k-loo/ml-100k-loo.{train,valid,test}.inter   RecBole atomic files of the leave-one-out split (ids as
                                   0-based tokens), read with RecBole's `benchmark_filename`
  ml-100k-seq/ml-100k-seq.{train,valid,test}.inter   the same rows as RecBole sequential benchmark files: each
                                   row's item_id_list is its jaxdl `history` (the user's previous <= 50 items in
                                   time order); rows with an empty history (each user's first item) are left out
  loo_eval.npz                     per test/valid user (user order): user, item, negatives [99], seen [1682] bool
"""

import os

import numpy as np
from absl import app, flags

from jaxdl.data import movielens as ml

OUT = flags.DEFINE_string("out", "/tmp/recsys_splits", "output folder")


def main(_):
    d = ml.load_raw()
    os.makedirs(OUT.value, exist_ok=True)
    for k in range(1, 6):
        for name, rows in zip(("base", "test"), ml.rating_fold(d, k), strict=True):
            with open(os.path.join(OUT.value, f"u{k}.{name}"), "w") as f:
                for r in rows:
                    f.write(f"{d.user[r] + 1}\t{d.item[r] + 1}\t{int(d.rating[r])}\t{d.timestamp[r]}\n")
    train, valid, test = ml.leave_one_out(d)
    loo = os.path.join(OUT.value, "ml-100k-loo")
    os.makedirs(loo, exist_ok=True)
    for name, rows in (("train", train), ("valid", valid), ("test", test)):
        with open(os.path.join(loo, f"ml-100k-loo.{name}.inter"), "w") as f:
            f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
            for r in rows:
                f.write(f"{d.user[r]}\t{d.item[r]}\t{d.rating[r]:g}\t{d.timestamp[r]}\n")
    hist = ml.histories(d)
    seq = os.path.join(OUT.value, "ml-100k-seq")
    os.makedirs(seq, exist_ok=True)
    for name, rows in (("train", train), ("valid", valid), ("test", test)):
        with open(os.path.join(seq, f"ml-100k-seq.{name}.inter"), "w") as f:
            f.write("user_id:token\titem_id_list:token_seq\titem_id:token\ttimestamp:float\n")
            for r in rows:
                items = hist[r][hist[r] >= 0]
                if len(items):
                    f.write(f"{d.user[r]}\t{' '.join(map(str, items))}\t{d.item[r]}\t{d.timestamp[r]}\n")
    seen = np.zeros((d.num_users, d.num_items), bool)
    seen[d.user[train], d.item[train]] = True
    seen_valid = seen[d.user[valid]].copy()
    seen[d.user[valid], d.item[valid]] = True
    np.savez_compressed(
        os.path.join(OUT.value, "loo_eval.npz"),
        test_user=d.user[test],
        test_item=d.item[test],
        test_negatives=ml.sample_negatives(d, d.user[test], seed=ml.NEGATIVES_SEED + 1),
        test_seen=seen[d.user[test]],
        valid_user=d.user[valid],
        valid_item=d.item[valid],
        valid_negatives=ml.sample_negatives(d, d.user[valid], seed=ml.NEGATIVES_SEED),
        valid_seen=seen_valid,
    )
    print(f"wrote the u1..u5 folds, the leave-one-out split and loo_eval.npz to {OUT.value}")


if __name__ == "__main__":
    app.run(main)
