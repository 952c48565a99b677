"""The trainer end to end on the real `movielens_loo`: MF trained with the ranking task beats the popularity
baseline (computed here from the raw data) on sampled and full-ranking HR/NDCG@10; the `ranking` evaluator's
numbers equal a brute-force recomputation from the restored parameters (ranks against the raw data's unrated
items, not the stored `seen` bits); `jaxdl.recommend` prints unseen titles and rejects an unknown user id."""

import json
import os

import ml_collections
import numpy as np
import pytest

from jaxdl import config as config_lib
from jaxdl.evaluators import _recsys_metrics as M


@pytest.fixture(scope="module")
def raw(movielens_raw):
    return movielens_raw


@pytest.fixture(scope="module")
def run(raw, data_dir, tmp_path_factory):
    from jaxdl.train import train_and_evaluate

    c = config_lib.base()
    c.data.name, c.data.data_dir = "movielens_loo", data_dir
    c.data.batch_size, c.data.eval_batch_size = 1024, 472  # 943 test users: 2 batches, the last one padded
    c.task = ml_collections.ConfigDict(dict(name="ranking", loss="softmax"), type_safe=False)
    c.model = ml_collections.ConfigDict(dict(name="mf", num_users=943, dim=32, biases=False))
    c.optim.name, c.optim.lr = "adam", 5e-3
    c.train.steps, c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 500, 100, 0, 0
    c.train.progress = False
    workdir = str(tmp_path_factory.mktemp("recsys_run"))
    train_and_evaluate(c, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        final = [json.loads(line) for line in f if "eval/hr10_full" in line][-1]
    return workdir, final


def test_mf_beats_popularity(raw, run):
    from jaxdl.data import movielens as ml

    _, final = run
    train, valid, test = ml.leave_one_out(raw)
    pop = np.bincount(raw.item[train], minlength=1682).astype(float)
    neg = ml.sample_negatives(raw, raw.user[test], seed=ml.NEGATIVES_SEED + 1)
    r = M.ranks(np.concatenate([pop[raw.item[test]][:, None], pop[neg]], 1), np.zeros(943, int))
    pop_sampled = M.hit_rate(r, 10).mean()
    seen = np.zeros((943, 1682), bool)  # full ranking excludes the user's train items and validation item
    seen[raw.user[train], raw.item[train]] = True
    seen[raw.user[valid], raw.item[valid]] = True
    r_full = M.ranks(np.tile(pop, (943, 1)), raw.item[test], ~seen[raw.user[test]])
    print("popularity", pop_sampled, M.hit_rate(r_full, 10).mean(), "model", final)
    assert final["eval/hr10_sampled"] > pop_sampled + 0.1, (final, pop_sampled)  # popularity: 0.399
    assert final["eval/ndcg10_sampled"] > M.ndcg(r, 10).mean() + 0.05
    assert final["eval/hr10_full"] > M.hit_rate(r_full, 10).mean() + 0.01  # popularity: 0.084


def test_evaluator_equals_brute_force(raw, run):
    import jax
    from flax import nnx

    from jaxdl.data import movielens as ml
    from jaxdl.state import restore_run

    workdir, final = run
    restored = restore_run(workdir, devices=jax.devices()[:1])
    model = nnx.merge(restored.graphdef, restored.state["params"], restored.state["rest"])
    train, valid, test = ml.leave_one_out(raw)
    users = raw.user[test]
    scores = np.asarray(model.score_all(users))
    neg = ml.sample_negatives(raw, users, seed=ml.NEGATIVES_SEED + 1)
    hr_full, ndcg_full, hr_sampled = [], [], []
    for k, u in enumerate(users):  # brute force per user: rank among the items not in the user's train/valid rows
        pos = raw.item[test[k]]
        excluded = set(raw.item[train][raw.user[train] == u].tolist()) | {int(raw.item[valid[k]])}
        others = [i for i in range(1682) if i != pos and i not in excluded]
        rank = sum(scores[k, i] >= scores[k, pos] for i in others)
        hr_full.append(rank < 10)
        ndcg_full.append(1 / np.log2(rank + 2) if rank < 10 else 0.0)
        hr_sampled.append(sum(scores[k, i] >= scores[k, pos] for i in neg[k]) < 10)
    assert final["eval/hr10_full"] == pytest.approx(np.mean(hr_full), abs=1e-9)
    assert final["eval/ndcg10_full"] == pytest.approx(np.mean(ndcg_full), abs=1e-9)
    assert final["eval/hr10_sampled"] == pytest.approx(np.mean(hr_sampled), abs=1e-9)
    assert 0 < final["eval/coverage10"] <= 1


def test_recommend_prints_unseen_titles_and_rejects_unknown_users(raw, run):
    from jaxdl import recommend
    from jaxdl.data import movielens as ml

    workdir, _ = run
    recs = recommend.recommend(workdir, user_id=1, k=5)
    train, _, _ = ml.leave_one_out(raw)
    seen = set((raw.item[train][raw.user[train] == 0] + 1).tolist())
    assert len(recs) == 5 and not seen & {item for item, *_ in recs}
    assert [s for *_, s in recs] == sorted((s for *_, s in recs), reverse=True)
    assert all(title == raw.title[item - 1] for item, title, *_ in recs)
    with pytest.raises(ValueError, match="--user=944: unknown user id"):
        recommend.recommend(workdir, user_id=944)
    with pytest.raises(ValueError, match="--k=0"):
        recommend.recommend(workdir, user_id=1, k=0)
