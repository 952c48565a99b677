"""Top-K movie recommendations of a trained MovieLens run, with titles and scores.

    python -m jaxdl.recommend --workdir=RUN --user=ID [--k=10] [--step=N] [--include_seen]
        [--ann=SPEC] [--rerank_workdir=RANKER_RUN] [--candidates=100]

RUN: a `jaxdl.main` workdir trained on `movielens_loo` (ranking task: scores are model logits) or a rating fold
`movielens_u1..u5` (rating task: scores are predicted ratings). ID: the MovieLens user id as in the files (1..943).
The user's training items (the run's train split) are excluded unless --include_seen. Without --ann the catalogue
is scored exactly (`model.score_all`, one pass over every item); --ann=SPEC (`jaxdl.serve.ann.parse_spec`: exact,
hnsw[:M=..,ef_search=..], ivf[:nlist=..,nprobe=..], hnswlib[:...]) retrieves from an index over the run's item
embeddings instead (a retrieval model with `user_vectors` / `item_vectors`: two_tower). --rerank_workdir=RANKER_RUN
(e.g. a DeepFM run on `movielens_loo`) re-ranks the --candidates best retrieved items with that model's scores
(`jaxdl.serve.rerank`) and prints those. An unknown user id, a run on another dataset, a model without item
embeddings for --ann, or a bad --k / --candidates fails with a message naming it.
"""

import sys

import numpy as np
from absl import app, flags, logging

FLAGS = flags.FLAGS


def train_rows(dataset: str, data) -> np.ndarray:
    """Row indices (into the file order) of the training split of a MovieLens registry dataset."""
    from jaxdl.data import movielens as ml

    if dataset == "movielens_loo":
        return ml.leave_one_out(data)[0]
    if dataset.startswith("movielens_u") and dataset[-1:] in "12345" and len(dataset) == len("movielens_u1"):
        return ml.rating_fold(data, int(dataset[-1]))[0]
    raise ValueError(f"the run's dataset {dataset!r} is not a MovieLens dataset (movielens_loo, movielens_u1..u5)")


def user_inputs(data, user: int, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The model inputs of one user (batch of 1): side features and the last HISTORY training items."""
    from jaxdl.data import movielens as ml

    mine = rows[data.user[rows] == user]
    mine = mine[np.lexsort((mine, data.timestamp[mine]))]
    hist = np.full(ml.HISTORY, -1, np.int32)
    last = data.item[mine][-ml.HISTORY :]
    hist[ml.HISTORY - len(last) :] = last
    return {
        "history": hist[None],
        "age": data.age[user : user + 1],
        "gender": data.gender[user : user + 1],
        "occupation": data.occupation[user : user + 1],
    }


def recommend(
    workdir: str,
    user_id: int,
    k: int = 10,
    step: int | None = None,
    include_seen: bool = False,
    *,
    ann: str | None = None,
    rerank_workdir: str | None = None,
    candidates: int = 100,
):
    """[(item id (1-based), title, year, score)] of the k best items for MovieLens user `user_id` (1-based);
    with `ann` / `rerank_workdir` the retrieve -> re-rank pipeline (module docstring), scores then being the
    ranker's (or the retrieval inner products when only `ann` is given)."""
    import jax
    import jax.numpy as jnp

    from jaxdl.data import movielens as ml
    from jaxdl.serve import ann as ann_lib
    from jaxdl.serve import rerank as rerank_lib

    data = ml.load_raw()
    if not 1 <= user_id <= data.num_users:
        raise ValueError(f"--user={user_id}: unknown user id (MovieLens-100k users are 1..{data.num_users})")
    if k < 1:
        raise ValueError(f"--k={k} must be >= 1")
    if rerank_workdir and not k <= candidates <= data.num_items:
        raise ValueError(f"--candidates={candidates} must be in [--k={k}, {data.num_items}]")
    if ann:
        ann_lib.parse_spec(ann)  # a bad spec fails before any checkpoint is read
    model, config = rerank_lib.load_model(workdir, step)
    rows = train_rows(config.data.name, data)
    user = user_id - 1
    if not hasattr(model, "score_all"):
        raise ValueError(f"model {config.model.name!r} of {workdir} has no score_all (not a recommender)")
    inputs = {key: jnp.asarray(v) for key, v in user_inputs(data, user, rows).items()}
    users = jnp.asarray([user], jnp.int32)
    seen = np.unique(data.item[rows][data.user[rows] == user]) if not include_seen else np.zeros(0, np.int64)
    depth = candidates if rerank_workdir else k
    if ann:
        if not hasattr(model, "item_vectors"):
            raise ValueError(f"--ann needs a retrieval model with item embeddings (two_tower); {workdir} holds "
                             f"{config.model.name!r}")  # fmt: skip
        index = ann_lib.build(np.asarray(model.item_vectors(jnp.arange(model.num_items))), ann)
        query = np.asarray(model.user_vectors(users, **inputs))
        top, scores = rerank_lib.retrieve(index, query, min(depth, data.num_items - len(seen)), [seen])
        top, scores = top[0], scores[0] / getattr(model, "temperature", 1.0)
    else:
        all_scores = np.array(jax.device_get(model.score_all(users, **inputs)))[0]
        all_scores[seen] = -np.inf
        top = np.argsort(-all_scores, kind="stable")[:depth]
        top = top[np.isfinite(all_scores[top])]
        scores = all_scores[top]
    if rerank_workdir:
        ranker, ranker_config = rerank_lib.load_model(rerank_workdir)
        if ranker_config.data.name != config.data.name:
            raise ValueError(f"--rerank_workdir={rerank_workdir} was trained on {ranker_config.data.name!r}, "
                             f"--workdir on {config.data.name!r}")  # fmt: skip
        score = lambda u, c, **kw: ranker.score(jnp.asarray(u), jnp.asarray(c), **kw)
        top, scores = rerank_lib.rerank(score, np.asarray(users), top[None], **inputs)
        top, scores = top[0], scores[0]
    return [
        (int(i) + 1, str(data.title[i]), int(data.year[i]), float(s)) for i, s in zip(top[:k], scores[:k], strict=True)
    ]


def define_flags() -> None:
    """The command-line flags, defined only when this module runs as the program (so importing it beside
    another jaxdl command cannot define a flag such as --workdir twice)."""
    flags.DEFINE_string("workdir", None, "a jaxdl run directory trained on a MovieLens dataset", required=True)
    flags.DEFINE_integer("user", None, "MovieLens user id (1-based, as in the data files)", required=True)
    flags.DEFINE_integer("k", 10, "number of recommendations")
    flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")
    flags.DEFINE_bool("include_seen", False, "also recommend items the user rated in the run's training split")
    flags.DEFINE_string("ann", None, "retrieve from an ANN index (jaxdl.serve.ann spec, e.g. hnsw or ivf:nprobe=8)")
    flags.DEFINE_string("rerank_workdir", None, "a ranking run (e.g. DeepFM) that re-ranks the retrieved candidates")
    flags.DEFINE_integer("candidates", 100, "candidates retrieved for --rerank_workdir to re-rank")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # checkpoint restore logs
    try:
        recs = recommend(
            FLAGS.workdir, FLAGS.user, FLAGS.k, FLAGS.step, FLAGS.include_seen,
            ann=FLAGS.ann, rerank_workdir=FLAGS.rerank_workdir, candidates=FLAGS.candidates,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    how = f", retrieved with {FLAGS.ann}" if FLAGS.ann else ""
    how += f", re-ranked by {FLAGS.rerank_workdir} among {FLAGS.candidates}" if FLAGS.rerank_workdir else ""
    print(f"top {len(recs)} for user {FLAGS.user} ({FLAGS.workdir}{how}):")
    for rank, (item, title, year, score) in enumerate(recs, 1):
        print(f"{rank:3d}. {title} ({year or 'year unknown'})  [item {item}]  score {score:.4f}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
