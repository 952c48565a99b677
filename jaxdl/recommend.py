"""Top-K movie recommendations of a trained MovieLens run, with titles and scores.

    python -m jaxdl.recommend --workdir=RUN --user=ID [--k=10] [--step=N] [--include_seen]

RUN: a `jaxdl.main` workdir trained on `movielens_loo` (ranking task: scores are model logits) or a rating fold
`movielens_u1..u5` (rating task: scores are predicted ratings). ID: the MovieLens user id as in the files (1..943).
The user's training items (the run's train split) are excluded unless --include_seen. The catalogue is scored
exactly (`model.score_all`, one pass over every item). An unknown user id, a run on another dataset or a bad
--k fails with a message naming it.
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


def recommend(workdir: str, user_id: int, k: int = 10, step: int | None = None, include_seen: bool = False):
    """[(item id (1-based), title, year, score)] of the k best items for MovieLens user `user_id` (1-based)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxdl.data import movielens as ml
    from jaxdl.state import restore_run

    data = ml.load_raw()
    if not 1 <= user_id <= data.num_users:
        raise ValueError(f"--user={user_id}: unknown user id (MovieLens-100k users are 1..{data.num_users})")
    if k < 1:
        raise ValueError(f"--k={k} must be >= 1")
    run = restore_run(workdir, step, devices=jax.devices()[:1])
    rows = train_rows(run.config.data.name, data)
    user = user_id - 1
    model = nnx.merge(run.graphdef, run.state["params"], run.state["rest"])
    if not hasattr(model, "score_all"):
        raise ValueError(f"model {run.config.model.name!r} of {workdir} has no score_all (not a recommender)")
    inputs = {key: jnp.asarray(v) for key, v in user_inputs(data, user, rows).items()}
    scores = np.array(jax.device_get(model.score_all(jnp.asarray([user], jnp.int32), **inputs)))[0]
    if not include_seen:
        scores[data.item[rows][data.user[rows] == user]] = -np.inf
    top = np.argsort(-scores, kind="stable")[:k]
    return [
        (int(i) + 1, str(data.title[i]), int(data.year[i]), float(scores[i])) for i in top if np.isfinite(scores[i])
    ]


def define_flags() -> None:
    """The command-line flags, defined only when this module runs as the program (so importing it beside
    another jaxdl command cannot define a flag such as --workdir twice)."""
    flags.DEFINE_string("workdir", None, "a jaxdl run directory trained on a MovieLens dataset", required=True)
    flags.DEFINE_integer("user", None, "MovieLens user id (1-based, as in the data files)", required=True)
    flags.DEFINE_integer("k", 10, "number of recommendations")
    flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")
    flags.DEFINE_bool("include_seen", False, "also recommend items the user rated in the run's training split")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # checkpoint restore logs
    try:
        recs = recommend(FLAGS.workdir, FLAGS.user, FLAGS.k, FLAGS.step, FLAGS.include_seen)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    print(f"top {len(recs)} for user {FLAGS.user} ({FLAGS.workdir}):")
    for rank, (item, title, year, score) in enumerate(recs, 1):
        print(f"{rank:3d}. {title} ({year or 'year unknown'})  [item {item}]  score {score:.4f}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
