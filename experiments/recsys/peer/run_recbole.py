"""RecBole's BPR and NeuMF on the exported leave-one-out split: the HR/NDCG peers of jaxdl's `bpr` / `neumf`.

Runs in the side virtualenv (experiments/recsys/README.md has the install commands), after
`python experiments/recsys/export_splits.py --out=/tmp/recsys_splits` in the project venv:

    /tmp/peer_recsys/bin/python experiments/recsys/peer/run_recbole.py --splits=/tmp/recsys_splits \
        --models=BPR,NeuMF,SASRec --seeds=0,1,2 --out=experiments/recsys/peer/recbole.json

RecBole reads the identical train/valid/test rows through `benchmark_filename`; hyperparameters are set to
match experiments/recsys/config.py (BPR: dim 64, 30 epochs, batch 1024, Adam 1e-3, 1 negative; NeuMF: GMF 32 + MLP
32+32 -> 32 -> 16, no dropout, 10 epochs, batch 256, Adam 1e-3, 4 negatives; SASRec: 2 layers, 2 heads, dim 64,
MLP 256, dropout 0.2, last 50 items, CE loss, 20 epochs, batch 256, Adam 1e-3), trained for the fixed epochs
(one validation at the end, so the "best" model is the last, as in jaxdl). Reported per run: RecBole's own
full-ranking test Hit@10 / NDCG@10 / MRR@10, and the trained model's scores ranked by jaxdl's metric code
(jaxdl/evaluators/_recsys_metrics.py, loaded by path: it needs only numpy) on jaxdl's stored 99 negatives and
`seen` masks (loo_eval.npz) -- the same protocol as the jaxdl rows of the table. SASRec's row in
experiments/recsys/sequential/README.md was run with --epochs=1 (20 epochs is hours per seed on the shared 2-core
CPU); for sequential models RecBole's own full ranking does not exclude the user's past items, so its
`recbole_full` numbers are lower than ours there (for BPR / NeuMF the two agree).
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
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.model.general_recommender import BPR, NeuMF
from recbole.model.sequential_recommender import SASRec
from recbole.trainer import Trainer
from recbole.utils import init_seed

HERE = os.path.dirname(os.path.abspath(__file__))
METRICS = os.path.join(HERE, "..", "..", "..", "jaxdl", "evaluators", "_recsys_metrics.py")
MODELS = {
    "BPR": (BPR, dict(embedding_size=64, epochs=30, train_batch_size=1024, learning_rate=1e-3,
                      train_neg_sample_args=dict(distribution="uniform", sample_num=1))),
    "NeuMF": (NeuMF, dict(mf_embedding_size=32, mlp_embedding_size=32, mlp_hidden_size=[32, 16], dropout_prob=0.0,
                          mf_train=True, mlp_train=True, use_pretrain=False, epochs=10, train_batch_size=256,
                          learning_rate=1e-3, train_neg_sample_args=dict(distribution="uniform", sample_num=4))),
    "SASRec": (SASRec, dict(n_layers=2, n_heads=2, hidden_size=64, inner_size=256, hidden_dropout_prob=0.2,
                            attn_dropout_prob=0.2, hidden_act="gelu", layer_norm_eps=1e-12, initializer_range=0.02,
                            loss_type="CE", MAX_ITEM_LIST_LENGTH=50, epochs=20, train_batch_size=256,
                            learning_rate=1e-3, train_neg_sample_args=None)),
}  # fmt: skip


def load_metrics():
    spec = importlib.util.spec_from_file_location("recsys_metrics", METRICS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scores_for(model, dataset, users: np.ndarray) -> np.ndarray:
    """float [len(users), 1682]: the model's full_sort_predict scores in jaxdl's 0-based item order."""
    uid = dataset.field2token_id["user_id"]
    iid = dataset.field2token_id["item_id"]
    internal_items = np.array([iid[str(i)] for i in range(1682)])
    out = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(users), 64):
            u = torch.tensor([uid[str(x)] for x in users[start : start + 64]])
            try:
                s = model.full_sort_predict(Interaction({"user_id": u})).view(len(u), -1).numpy()[:, internal_items]
            except NotImplementedError:  # NeuMF: score every (user, item) pair with predict
                pairs = Interaction(
                    {"user_id": u.repeat_interleave(1682), "item_id": torch.tensor(internal_items).repeat(len(u))}
                )
                s = model.predict(pairs).view(len(u), 1682).numpy()
            out.append(s)
    return np.concatenate(out)


def scores_from_loader(model, dataset, test_data, users: np.ndarray) -> np.ndarray:
    """float [len(users), 1682]: full_sort_predict on RecBole's own test batches (sequential models need the
    loader's item_id_list / item_length), rows put in `users` order and columns in jaxdl's item order."""
    iid = dataset.field2token_id["item_id"]
    internal_items = np.array([iid[str(i)] for i in range(1682)])
    row_of = {int(u): k for k, u in enumerate(users)}
    out = np.full((len(users), 1682), np.nan)
    model.eval()
    with torch.no_grad():
        for interaction, *_ in test_data:
            s = model.full_sort_predict(interaction).view(len(interaction), -1).numpy()
            tokens = dataset.id2token("user_id", interaction["user_id"].numpy())
            for k, tok in enumerate(tokens):
                out[row_of[int(tok)]] = s[k, internal_items]
    if np.isnan(out).any():
        raise RuntimeError("RecBole's test loader did not cover every test user")
    return out


def evaluate(M, scores, item, negatives, seen) -> dict:
    rows = np.arange(len(item))
    sampled = M.ranks(np.concatenate([scores[rows, item][:, None], np.take_along_axis(scores, negatives, 1)], 1),
                      np.zeros(len(item), np.int64))  # fmt: skip
    full = M.ranks(scores, item, ~seen)
    top = M.top_k(scores, 10, ~seen)
    return dict(hr10_sampled=M.hit_rate(sampled, 10).mean(), ndcg10_sampled=M.ndcg(sampled, 10).mean(),
                mrr_sampled=M.mrr(sampled).mean(), hr10_full=M.hit_rate(full, 10).mean(),
                ndcg10_full=M.ndcg(full, 10).mean(), mrr_full=M.mrr(full).mean(), coverage10=M.coverage(top, 1682))  # fmt: skip


def recbole_config(splits: str, seed: int, checkpoint_dir: str, params: dict) -> dict:
    """RecBole's config for our exported leave-one-out split (train/valid/test files in `splits`): CPU, full
    ranking in time order per user, Hit/NDCG/MRR@10, evaluated once at the end; `params` the model's own."""
    return dict(
        data_path=splits, benchmark_filename=["train", "valid", "test"], seed=seed,
        reproducibility=True, device="cpu", use_gpu=False, show_progress=False, checkpoint_dir=checkpoint_dir,
        load_col={"inter": ["user_id", "item_id", "rating", "timestamp"]}, metrics=["Hit", "NDCG", "MRR"],
        topk=[10], valid_metric="NDCG@10", eval_args=dict(mode="full", order="TO", group_by="user"),
        eval_step=params["epochs"], stopping_step=1000, log_wandb=False, **params,
    )  # fmt: skip


def fit(cls, dataset_name: str, cfg: dict, seed: int):
    """(trainer, dataset, test loader, fit seconds, RecBole's own test metrics) of RecBole model class `cls` trained
    on `dataset_name` with config dict `cfg` and seed `seed`. The last model is the only one validated, so the
    "best" is the last (load_best_model=False)."""
    config = Config(model=cls, dataset=dataset_name, config_dict=cfg)
    init_seed(seed, True)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    trainer = Trainer(config, cls(config, train_data.dataset).to("cpu"))
    t = time.time()
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    fit_s = time.time() - t
    own = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    return trainer, dataset, test_data, fit_s, own


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", default="/tmp/recsys_splits")
    ap.add_argument("--models", default="BPR,NeuMF")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=0, help="override the epochs (a quick check); 0: the table's")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    M = load_metrics()
    ev = np.load(os.path.join(args.splits, "loo_eval.npz"))
    torch.set_num_threads(1)
    records = []
    if os.path.exists(args.out):
        with open(args.out) as f:
            records = json.load(f)["records"]
    for name in args.models.split(","):
        cls, params = MODELS[name]
        params = dict(params, epochs=args.epochs or params["epochs"])
        for seed in [int(s) for s in args.seeds.split(",")]:
            with tempfile.TemporaryDirectory() as tmp:
                cfg = recbole_config(args.splits, seed, tmp, params)
                if name == "SASRec":  # sequential benchmark files: one row per example with its item_id_list
                    cfg["load_col"] = {"inter": ["user_id", "item_id_list", "item_id", "timestamp"]}
                dataset_name = "ml-100k-seq" if name == "SASRec" else "ml-100k-loo"
                trainer, dataset, test_data, fit_s, own = fit(cls, dataset_name, cfg, seed)
                if name == "SASRec":
                    scores = scores_from_loader(trainer.model, dataset, test_data, ev["test_user"])
                else:
                    scores = scores_for(trainer.model, dataset, ev["test_user"])
                ours = evaluate(M, scores, ev["test_item"], ev["test_negatives"], ev["test_seen"])
                rec = dict(model=name, seed=seed, epochs=params["epochs"], fit_seconds=round(fit_s, 1),
                           recbole_full={k: float(v) for k, v in own.items()},
                           **{k: float(v) for k, v in ours.items()})  # fmt: skip
                print(json.dumps(rec), flush=True)
                records = [r for r in records if (r["model"], r["seed"]) != (name, seed)] + [rec]
                write(args.out, records)


def write(path: str, records: list) -> None:
    """Writes after every run (a crash keeps the finished ones); records of other (model, seed) pairs already in
    the file are kept, so models can be run in separate invocations."""
    env = dict(recbole=recbole.__version__, torch=torch.__version__, numpy=np.__version__,
               python=platform.python_version(), machine=platform.machine(), date=datetime.date.today().isoformat(),
               torch_threads=1)  # fmt: skip
    with open(path, "w") as f:
        json.dump({"environment": env, "records": records}, f, indent=1)


if __name__ == "__main__":
    main()
