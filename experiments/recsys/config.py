"""Recommenders on MovieLens-100k (jaxdl/data/movielens.py; files from the recbole wheel).

Commands (README.md in this folder has the study, runtimes and measured numbers):
  python -m jaxdl.main --config=experiments/recsys/config.py:mf,fold=1 --workdir=DIR     # RMSE/MAE on u1.test
  python -m jaxdl.main --config=experiments/recsys/config.py:bpr --workdir=DIR            # HR/NDCG@10 on LOO test
  python -m jaxdl.main --config=experiments/recsys/config.py:neumf --workdir=DIR
  python -m jaxdl.ablate --config=experiments/recsys/config.py:deepfm --workdir=DIR --seeds=0,1,2
Args: `<mf|bpr|neumf|deepfm|sasrec|two_tower>[,fold=1..5][,seed=N][,neg=uniform|unseen][,smoke]`. `fold` picks the u1..u5
rating fold (mf only); `neg=unseen` draws training negatives among the user's non-interacted items (RecBole's way).
- mf: biased MF, dim 64, MSE + 0.1 L2 per rating, Adam 2e-3 cosine-decayed, batch 256, 20 epochs (6,250 steps);
  ~1 min on 2 CPU cores; RMSE ~0.92 on u1 (Surprise SVD on the same fold: 0.95; its published 5-fold: 0.934).
- bpr: BPR-MF, dim 64, BPR loss with 1 uniform negative, Adam 1e-3, batch 1024, 30 epochs (2,874 steps).
- neumf: NeuMF (GMF 32 + MLP 64-32-16), log loss with 4 negatives, Adam 1e-3, batch 256, 10 epochs.
- sasrec: SASRec (2 pre-LN blocks, dim 64, 2 heads, MLP 256, dropout 0.2, last 50 items), task `next_items`:
  softmax cross-entropy over the catalogue at every position of history + positive, Adam 1e-3, batch 128, 200
  steps: the same run as sequential/config.py:sasrec (numbers and the RecBole SASRec peer in sequential/README.md).
- deepfm: DeepFM (7 fields: user, age decade, gender, occupation, item, genres bag (mean), year bucket; dim 16;
  FM + MLP 128-64), log loss with 4 negatives, Adam 1e-3, batch 256, 10 epochs (3,832 steps); 434-1010 s per run
  measured on the shared, loaded 2 CPU cores; LOO test HR@10 sampled 0.633 ± 0.017, full 0.118 ± 0.005 (n = 3
  seeds, README table). `deepfm,smoke` runs 30 steps.
- two_tower: user tower (id, history mean, age/gender/occupation) and item tower (id, genres, year), dim 64,
  temperature 0.05, in-batch softmax with logQ correction, Adam 1e-3, batch 1024, 30 epochs.
The leave-one-out evaluators report sampled (99 negatives) and full-ranking HR/NDCG@10, MRR and coverage@10.
"""

import ml_collections

from jaxdl import config as config_lib

NUM_USERS = 943  # jaxdl.data.movielens.NUM_USERS (not imported: configs stay light)
TRAIN_MEAN = 3.53  # mean rating of u.data, the MF global offset's initial value


def get_config(arg: str = "mf") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(
        arg, model=("mf", "bpr", "neumf", "deepfm", "sasrec", "two_tower"), fold=1, seed=0, neg="uniform"
    )
    if a.neg not in ("uniform", "unseen"):
        raise ValueError(f"config arg neg={a.neg!r} is not uniform or unseen")
    if a.fold not in range(1, 6):
        raise ValueError(f"config arg fold={a.fold} is not one of 1..5")
    c = config_lib.base()
    c.seed = a.seed
    c.optim.name = "adam"
    c.train.log_every = 500
    c.train.checkpoint_every = 0
    if a.model == "mf":
        c.data.name = f"movielens_u{a.fold}"
        c.data.batch_size = 256
        c.data.eval_batch_size = 2000
        c.task.name = "rating"
        c.task.reg = 0.1  # chosen on a 10 % hold-out of u1.base (0.05: 0.937, 0.1: 0.912, 0.15: 0.918 RMSE)
        c.model = ml_collections.ConfigDict(
            dict(name="mf", num_users=NUM_USERS, dim=64, biases=True, init_std=0.1, global_mean=TRAIN_MEAN)
        )
        c.optim.lr = 2e-3
        c.optim.schedule = "warmup_cosine"
        c.optim.warmup_steps = 0
        c.train.steps = 20 * 80_000 // 256
    else:
        c.data.name = "movielens_loo"
        c.data.eval_split = "test"
        c.data.eval_batch_size = 128 if a.model in ("neumf", "deepfm") else 943
        c.task.name = "ranking"
        c.evals.main = dict(kind="ranking", ks=(10,))
        c.evals.valid = dict(kind="ranking", ks=(10,), split="valid", every=0)
        if a.model == "bpr":
            c.data.batch_size = 1024
            c.task.loss = "bpr"
            c.model = ml_collections.ConfigDict(dict(name="mf", num_users=NUM_USERS, dim=64, biases=False))
            c.optim.lr = 1e-3
            c.train.steps = 30 * 98_114 // 1024
        elif a.model == "two_tower":
            c.data.batch_size = 1024
            c.task.loss = "in_batch"
            c.model = ml_collections.ConfigDict(dict(name="two_tower", num_users=NUM_USERS, dim=64, temperature=0.05))
            c.optim.lr = 1e-3
            c.train.steps = 30 * 98_114 // 1024
        elif a.model == "sasrec":  # = sequential/config.py:sasrec, the run its README reports
            c.data.batch_size = 128
            c.task.name = "next_items"
            c.task.loss = "softmax"
            c.model = ml_collections.ConfigDict(
                dict(name="sasrec", num_users=NUM_USERS, dim=64, depth=2, heads=2, mlp_dim=256, dropout=0.2)
            )
            c.optim.lr = 1e-3
            c.train.steps = 200
            c.train.log_every = 100
        elif a.model == "deepfm":
            c.data.batch_size = 256
            c.task.loss = "bce"
            c.task.num_negatives = 4
            c.model = ml_collections.ConfigDict(
                dict(name="deepfm", num_users=NUM_USERS, dim=16, mlp_dims=(128, 64), pooling="mean", dropout=0.0)
            )
            c.optim.lr = 1e-3
            c.train.steps = 10 * 98_114 // 256
        else:
            c.data.batch_size = 256
            c.task.loss = "bce"
            c.task.num_negatives = 4
            c.model = ml_collections.ConfigDict(
                dict(name="neumf", num_users=NUM_USERS, gmf_dim=32, mlp_dims=(64, 32, 16))
            )
            c.optim.lr = 1e-3
            c.train.steps = 10 * 98_114 // 256
    c.model.row_multiple = (
        1  # 8: tables padded to split over 8 devices, e.g. --config.sharding.rules="(('vocab','data'),)"
    )
    c.train.eval_every = c.train.steps
    if a.neg == "unseen":  # RecBole's sampler: negatives among the user's non-interacted train items
        if a.model not in ("bpr", "neumf", "deepfm"):
            raise ValueError(f"config arg neg=unseen: {a.model} does not sample negatives (bpr, neumf, deepfm do)")
        c.task.negatives, c.task.dataset = "unseen", "movielens_loo"
    return config_lib.shrink_for_smoke(c) if a.smoke else c


def get_sweep(arg: str = "mf"):
    """`python -m jaxdl.ablate --config=experiments/recsys/config.py:<model> --seeds=0,1,2`: mf over the five
    folds u1..u5; bpr / neumf: the one leave-one-out split."""
    a = config_lib.parse_arg(
        arg, model=("mf", "bpr", "neumf", "deepfm", "sasrec", "two_tower"), fold=1, seed=0, neg="uniform"
    )
    if a.model == "mf":
        return [{"_name": f"u{k}", "data.name": f"movielens_u{k}"} for k in range(1, 6)]
    return [{"_name": a.model if a.neg == "uniform" else f"{a.model}_unseen"}]
