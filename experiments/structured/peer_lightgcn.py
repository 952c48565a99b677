"""RecBole's LightGCN on the exported leave-one-out split of MovieLens-100k: the peer of jaxdl's `lightgcn`
(experiments/structured/lightgcn.py). Follows experiments/recsys/peer/run_recbole.py and reuses its scoring code
(loaded by path: RecBole's full_sort_predict scores put in jaxdl's item order, ranked by jaxdl's metric code
jaxdl/evaluators/_recsys_metrics.py on jaxdl's stored 99 negatives and `seen` masks).

Runs in the side virtualenv of experiments/recsys/README.md (never a project dependency), after
`python experiments/recsys/export_splits.py --out=/tmp/lgcn_splits` in the project venv:

    /tmp/peer_recsys/bin/python experiments/structured/peer_lightgcn.py --splits=/tmp/lgcn_splits --seeds=0,1,2 \
        --out=experiments/structured/peer_lightgcn.json

RecBole reads the identical train/valid/test rows through `benchmark_filename`; its LightGCN builds its
normalized adjacency from the train rows only. Hyperparameters match the jaxdl config: dim 64, 3 layers, BPR with
1 uniform negative, batch 4096, Adam 5e-3, 60 epochs, L2 1e-4 on half the squared layer-0 norms per batch row
(`require_pow=True`; jaxdl's reg 5e-5 on the full squared norms is the same term), one validation at the end (the
"best" model is the last, as in jaxdl). Differences that remain: RecBole initializes the tables Xavier-uniform
(jaxdl: N(0, 0.1^2)), and its negative sampler never draws an item the user interacted with in train (jaxdl's
draws uniformly over the catalogue). Reported per seed: RecBole's own full-ranking test Hit/NDCG/MRR@10 and
jaxdl-protocol sampled and full metrics.
"""

import argparse
import datetime
import importlib.util
import json
import os
import platform
import tempfile
import time

import numpy as np
import recbole
import scipy
import scipy.sparse as sp
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.general_recommender import LightGCN
from recbole.trainer import Trainer
from recbole.utils import init_seed

if not hasattr(sp.dok_matrix, "_update"):
    # RecBole 1.2.1's LightGCN fills its adjacency with dok_matrix._update, which scipy >= 1.12 removed (the
    # side venv has scipy 1.13): the same bulk insert into the matrix's dict of keys, values unchanged.
    sp.dok_matrix._update = lambda self, data: self._dict.update(data)

HERE = os.path.dirname(os.path.abspath(__file__))
RUN_RECBOLE = os.path.join(HERE, "..", "recsys", "peer", "run_recbole.py")
PARAMS = dict(
    embedding_size=64,
    n_layers=3,
    reg_weight=1e-4,
    require_pow=True,
    epochs=60,
    train_batch_size=4096,
    learning_rate=5e-3,
    train_neg_sample_args=dict(distribution="uniform", sample_num=1),
)


def load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", default="/tmp/lgcn_splits")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=0, help="override the epochs (a quick check); 0: the table's")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    peer = load(RUN_RECBOLE, "run_recbole")  # recbole_config, scores_for, evaluate, load_metrics
    M = peer.load_metrics()
    ev = np.load(os.path.join(args.splits, "loo_eval.npz"))
    torch.set_num_threads(1)
    params = dict(PARAMS, epochs=args.epochs or PARAMS["epochs"])
    records = []
    if os.path.exists(args.out):
        with open(args.out) as f:
            records = json.load(f)["records"]
    for seed in [int(s) for s in args.seeds.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = peer.recbole_config(args.splits, seed, tmp, params)
            config = Config(model=LightGCN, dataset="ml-100k-loo", config_dict=cfg)
            init_seed(seed, True)
            dataset = create_dataset(config)
            train_data, valid_data, test_data = data_preparation(config, dataset)
            model = LightGCN(config, train_data.dataset).to("cpu")
            graph_edges = int(model.norm_adj_matrix.coalesce().indices().shape[1])
            trainer = Trainer(config, model)
            t = time.time()
            trainer.fit(train_data, valid_data, saved=False, show_progress=False)
            fit_s = time.time() - t
            own = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
            scores = peer.scores_for(trainer.model, dataset, ev["test_user"])
            ours = peer.evaluate(M, scores, ev["test_item"], ev["test_negatives"], ev["test_seen"])
            rec = dict(model="LightGCN", seed=seed, epochs=params["epochs"], fit_seconds=round(fit_s, 1),
                       graph_edges=graph_edges, train_rows=len(train_data.dataset),
                       recbole_full={k: float(v) for k, v in own.items()},
                       **{k: float(v) for k, v in ours.items()})  # fmt: skip
            print(json.dumps(rec), flush=True)
            records = [r for r in records if r["seed"] != seed] + [rec]
            write(args.out, records, params)


def write(path: str, records: list, params: dict) -> None:
    """Writes after every seed (a crash keeps the finished ones)."""
    env = dict(recbole=recbole.__version__, torch=torch.__version__, numpy=np.__version__,
               python=platform.python_version(), machine=platform.machine(), date=datetime.date.today().isoformat(),
               scipy=scipy.__version__, torch_threads=1, device="cpu")  # fmt: skip
    with open(path, "w") as f:
        json.dump({"environment": env, "params": params, "records": records}, f, indent=1)


if __name__ == "__main__":
    main()
