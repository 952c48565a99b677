"""`python -m jaxdl.recommend` with the two-stage pipeline on tiny trained runs (a two-tower retriever and a DeepFM
ranker, a few steps each on the real `movielens_loo`): --ann with an exhaustive HNSW beam returns the exact
recommendations; --rerank_workdir returns the DeepFM's best among the retriever's exact top candidates, recomputed
here by brute force from the restored models; bad options fail naming them."""

import ml_collections
import numpy as np
import pytest

from jaxdl import config as config_lib


@pytest.fixture(scope="module")
def raw(movielens_raw):
    return movielens_raw


def train(data_dir, workdir, model: dict, loss: str) -> str:
    from jaxdl.train import train_and_evaluate

    c = config_lib.base()
    c.data.name, c.data.data_dir, c.data.batch_size = "movielens_loo", data_dir, 256
    c.task = ml_collections.ConfigDict(dict(name="ranking", loss=loss), type_safe=False)
    c.model = ml_collections.ConfigDict(dict(num_users=943, **model))
    c.optim.name, c.optim.lr = "adam", 1e-2
    c.train.steps, c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 5, 5, 0, 0
    c.train.progress = False
    c.evals.main = dict(kind="ranking", full=False)  # the cheap sampled metrics only: this test needs checkpoints
    train_and_evaluate(c, workdir)
    return workdir


@pytest.fixture(scope="module")
def runs(raw, data_dir, tmp_path_factory):
    tower = train(data_dir, str(tmp_path_factory.mktemp("tt")), dict(name="two_tower", dim=8), "in_batch")
    ranker = train(data_dir, str(tmp_path_factory.mktemp("fm")), dict(name="deepfm", dim=4, mlp_dims=(8,)), "bce")
    return tower, ranker


@pytest.mark.slow
def test_ann_and_rerank_match_brute_force(raw, runs):
    import jax.numpy as jnp

    from jaxdl import recommend
    from jaxdl.data import movielens as ml
    from jaxdl.serve.rerank import load_model

    tower_dir, ranker_dir = runs
    exact = recommend.recommend(tower_dir, user_id=3, k=5)
    approx = recommend.recommend(tower_dir, user_id=3, k=5, ann="hnsw:M=16,ef_construction=400,ef_search=1682")
    assert [r[0] for r in approx] == [r[0] for r in exact]
    np.testing.assert_allclose([r[3] for r in approx], [r[3] for r in exact], rtol=1e-4)

    got = recommend.recommend(tower_dir, user_id=3, k=5, rerank_workdir=ranker_dir, candidates=20)
    train_rows = ml.leave_one_out(raw)[0]
    inputs = {k: jnp.asarray(v) for k, v in recommend.user_inputs(raw, 2, train_rows).items()}
    tower, _ = load_model(tower_dir)
    ranker, _ = load_model(ranker_dir)
    s = np.array(tower.score_all(jnp.asarray([2]), **inputs))[0]
    s[raw.item[train_rows][raw.user[train_rows] == 2]] = -np.inf
    candidates = np.argsort(-s, kind="stable")[:20]
    r = np.array(ranker.score(jnp.asarray([2]), jnp.asarray(candidates[None]), **inputs))[0]
    best = candidates[np.argsort(-r, kind="stable")[:5]]
    assert [item for item, *_ in got] == (best + 1).tolist()
    np.testing.assert_allclose([x[3] for x in got], np.sort(r)[::-1][:5], rtol=1e-5)
    assert set(best) <= set(candidates)


@pytest.mark.slow
def test_bad_pipeline_options_fail_naming_them(runs):
    from jaxdl import recommend

    tower_dir, ranker_dir = runs
    with pytest.raises(ValueError, match="--ann needs a retrieval model with item embeddings"):
        recommend.recommend(ranker_dir, user_id=1, ann="hnsw")
    with pytest.raises(ValueError, match="kind 'annoy' is not one of"):
        recommend.recommend(tower_dir, user_id=1, ann="annoy")
    with pytest.raises(ValueError, match="--candidates=5 must be in \\[--k=10"):
        recommend.recommend(tower_dir, user_id=1, rerank_workdir=ranker_dir, candidates=5)
    with pytest.raises(ValueError, match="--user=0: unknown user id"):
        recommend.recommend(tower_dir, user_id=0, ann="hnsw", rerank_workdir=ranker_dir)
