"""Sequential recommenders on MovieLens-100k's leave-one-out split (`movielens_loo`: per user, the last item is
test, the one before validation; each train row holds the user's previous 50 items, left-padded with -1).

    python -m jaxdl.main --config=experiments/recsys/sequential/config.py:sasrec --workdir=DIR
    python -m jaxdl.main --config=experiments/recsys/sequential/config.py:sasrec,smoke --workdir=DIR   # seconds
    python -m jaxdl.ablate --config=experiments/recsys/sequential/config.py:sasrec --workdir=DIR --seeds=0,1,2
Args: `<sasrec|bert4rec>[,last][,seed=N][,steps=N][,smoke]` (steps=0: the study's). README.md in this folder has
the measured runtimes and numbers.

- sasrec: SASRec (2 pre-LN causal blocks from the project's attention + MLP layers, dim 64, 2 heads, MLP 256,
  dropout 0.2, the last 50 items), task `next_items`: softmax cross-entropy over the whole catalogue at every
  position of history + positive (Kang & McAuley's all-position training; RecBole's CE loss), Adam 1e-3,
  batch 128, 200 steps (25,600 rows x 38.6 counted positions = ~0.99M targets, ~10 passes over the 98,114
  next-item pairs of the train split). Test HR@10 full 0.139 ± 0.004, sampled 0.676 ± 0.007 (n = 3); 5-18 min
  per run on the loaded 2-core CPU.
- bert4rec: BERT4Rec (2 bidirectional pre-LN blocks, same widths), task `masked_items`: Cloze masking with
  probability 0.2, softmax cross-entropy over the catalogue at the masked positions, [mask] appended at
  evaluation; Adam 1e-3, batch 128, 200 steps (~7.8 masked targets per row). Test HR@10 full 0.089 ± 0.002,
  sampled 0.529 ± 0.014 (n = 3; popularity: 0.084 / 0.399); 3-5 min per run on the loaded CPU.
- sasrec,last: the same SASRec trained RecBole's way, for the like-for-like check against RecBole's SASRec
  (../peer/run_recbole.py): task `ranking` loss="softmax", a catalogue cross-entropy at the last position only
  (one target per prefix -> next-item row), batch 256, 383 steps = 1 epoch over the 98,114 train rows (RecBole's
  peer: 1 epoch over its 97,172 rows with a non-empty history).
Evaluators: HR/NDCG@10 and MRR, sampled (99 stored negatives) and full ranking, on test (and valid), at the end.
"""

import ml_collections

from jaxdl import config as config_lib

NUM_USERS = 943  # jaxdl.data.movielens.NUM_USERS (not imported: configs stay light)
MODELS = ("sasrec", "bert4rec")


def get_config(arg: str = "sasrec") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(arg, model=MODELS, last=bool, seed=0, steps=0)
    if a.steps < 0:
        raise ValueError(f"config arg steps={a.steps} must be >= 0 (0: the study's)")
    if a.last and a.model != "sasrec":
        raise ValueError(f"config arg 'last' (RecBole's last-position objective) is for sasrec, not {a.model}")
    c = config_lib.base()
    c.seed = a.seed
    c.data.name = "movielens_loo"
    c.data.eval_split = "test"
    c.data.batch_size = 128
    c.data.eval_batch_size = 943
    model = dict(num_users=NUM_USERS, dim=64, depth=2, heads=2, mlp_dim=256, dropout=0.2)
    if a.model == "sasrec":
        c.task.name = "ranking" if a.last else "next_items"
        c.task.loss = "softmax"
        c.model = ml_collections.ConfigDict(dict(name="sasrec", **model))
    else:
        c.task.name = "masked_items"
        c.task.mask_prob = 0.2
        c.model = ml_collections.ConfigDict(dict(name="bert4rec", **model))
    c.optim.name = "adam"
    c.optim.lr = 1e-3
    c.train.steps = a.steps or 200
    if a.last:
        c.data.batch_size = 256
        c.train.steps = a.steps or 98_114 // 256
    c.train.log_every = 100
    c.train.checkpoint_every = 0
    c.train.eval_every = c.train.steps
    c.evals.main = dict(kind="ranking", ks=(10,))
    c.evals.valid = dict(kind="ranking", ks=(10,), split="valid", every=0)
    return config_lib.shrink_for_smoke(c) if a.smoke else c


def get_sweep(arg: str = "sasrec"):
    """`python -m jaxdl.ablate --config=experiments/recsys/sequential/config.py:<model> --seeds=0,1,2`: one cell."""
    a = config_lib.parse_arg(arg, model=MODELS, last=bool, seed=0, steps=0)
    return [{"_name": a.model + ("_last" if a.last else "")}]
