"""Surprise (scikit-surprise) SVD / SVD++ on the exported u1..u5 folds: the RMSE / MAE peer of jaxdl's MF.

Runs in the side virtualenv (README.md in experiments/recsys has the install commands), after
`python experiments/recsys/export_splits.py --out=/tmp/recsys_splits` in the project venv:

    /tmp/peer_recsys/bin/python experiments/recsys/peer/run_surprise.py --splits=/tmp/recsys_splits \
        --algos=svd,svdpp --seeds=0,1,2 --out=experiments/recsys/peer/surprise.json

Surprise's defaults throughout (SVD: 100 factors, 20 epochs of SGD, lr 0.005, reg 0.02, init std 0.1, biased;
SVD++: 20 factors, 20 epochs, lr 0.007, reg 0.02); `accuracy.rmse` clips predictions to the rating scale.
Writes one record per (algo, fold, seed) with RMSE, MAE, fit seconds, versions and date.
"""

import argparse
import datetime
import json
import platform
import time

import numpy as np
import surprise
from surprise import SVD, Dataset, Reader, SVDpp, accuracy

ALGOS = {"svd": SVD, "svdpp": SVDpp}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", default="/tmp/recsys_splits")
    ap.add_argument("--algos", default="svd")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--folds", default="1,2,3,4,5")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    reader = Reader(line_format="user item rating timestamp", sep="\t", rating_scale=(1, 5))
    records = []
    for fold in [int(f) for f in args.folds.split(",")]:
        files = [(f"{args.splits}/u{fold}.base", f"{args.splits}/u{fold}.test")]
        data = Dataset.load_from_folds(files, reader=reader)
        trainset, testset = next(iter(surprise.model_selection.PredefinedKFold().split(data)))
        assert (trainset.n_ratings, len(testset)) == (80_000, 20_000)
        for algo in args.algos.split(","):
            for seed in [int(s) for s in args.seeds.split(",")]:
                model = ALGOS[algo](random_state=seed)
                t = time.time()
                model.fit(trainset)
                fit_s = time.time() - t
                pred = model.test(testset)
                rec = dict(algo=algo, fold=fold, seed=seed, rmse=accuracy.rmse(pred, verbose=False),
                           mae=accuracy.mae(pred, verbose=False), fit_seconds=round(fit_s, 2))  # fmt: skip
                print(json.dumps(rec), flush=True)
                records.append(rec)
    env = dict(surprise=surprise.__version__, numpy=np.__version__, python=platform.python_version(),
               machine=platform.machine(), date=datetime.date.today().isoformat())  # fmt: skip
    with open(args.out, "w") as f:
        json.dump({"environment": env, "records": records}, f, indent=1)


if __name__ == "__main__":
    main()
