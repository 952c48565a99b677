"""LightGCN (He et al. 2020) on MovieLens-100k's leave-one-out split (`movielens_loo`), beside RecBole's LightGCN
on the identical rows (experiments/structured/peer_lightgcn.py). README.md in this folder has the commands and
the measured numbers.

    python -m jaxdl.main --config=experiments/structured/lightgcn.py --workdir=DIR           # one seed
    python -m jaxdl.main --config=experiments/structured/lightgcn.py:seed=1 --workdir=DIR
    python -m jaxdl.main --config=experiments/structured/lightgcn.py:smoke --workdir=DIR     # seconds
    python -m jaxdl.ablate --config=experiments/structured/lightgcn.py --workdir=DIR --seeds=0,1,2
Args: `[seed=N][,layers=K][,epochs=E][,smoke]`.

Model `lightgcn` (jaxdl/models/recsys/lightgcn.py): dim 64, K = 3 propagation layers, layer-mean embeddings, the
graph built once in the model's constructor from the train rows of the leave-one-out split only (98,114
interactions). Task `ranking`, loss "bpr" with 1 uniform negative per positive, L2 5e-5 on the layer-0 embeddings
of (user, positive, negative) (= the paper's decay 1e-4 on half the squared norms). Adam 5e-3, batch 4096,
60 epochs (1,437 steps). Evaluators: HR/NDCG/MRR@10 sampled (99 stored negatives) and full ranking on test, and
the same on valid, once at the end. The peer uses the same dim / K / batch / epochs / lr / L2 (see its docstring).
"""

import ml_collections

from jaxdl import config as config_lib

NUM_USERS = 943  # jaxdl.data.movielens.NUM_USERS (not imported: configs stay light)
TRAIN_ROWS = 98_114  # the movielens_loo train split


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(arg, seed=0, layers=3, epochs=60)
    if a.layers < 0 or a.epochs < 1:
        raise ValueError(f"config arg layers={a.layers} must be >= 0 and epochs={a.epochs} >= 1")
    c = config_lib.base()
    c.seed = a.seed
    c.data.name = "movielens_loo"
    c.data.eval_split = "test"
    c.data.batch_size = 4096
    c.data.eval_batch_size = 943
    c.task.name = "ranking"
    c.task.loss = "bpr"
    c.task.num_negatives = 1
    c.task.reg = 5e-5
    c.model = ml_collections.ConfigDict(
        dict(name="lightgcn", num_users=NUM_USERS, dim=64, layers=a.layers, graph="movielens_loo", init_std=0.1)
    )
    c.optim.name = "adam"
    c.optim.lr = 5e-3
    c.train.steps = a.epochs * TRAIN_ROWS // c.data.batch_size
    c.train.log_every = 200
    c.train.checkpoint_every = 0
    c.train.eval_every = c.train.steps
    c.evals.main = dict(kind="ranking", ks=(10,))
    c.evals.valid = dict(kind="ranking", ks=(10,), split="valid", every=0)
    return config_lib.shrink_for_smoke(c) if a.smoke else c


def get_sweep(arg: str = ""):
    """`python -m jaxdl.ablate --config=experiments/structured/lightgcn.py --seeds=0,1,2`: one cell."""
    return [{"_name": "lightgcn"}]
