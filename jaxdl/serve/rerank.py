"""Two-stage recommendation: retrieve K candidates per user from an ANN index over item embeddings
(`jaxdl.serve.ann`), excluding the items the user has already seen, then re-rank the candidates with a
(costlier) ranking model's `score(user, items [B, K], **inputs)` (e.g. DeepFM, `jaxdl.models.recsys.deepfm`).

    retrieve(index, queries [Q, d], k, seen) -> (ids int64 [Q, k], retrieval scores float32 [Q, k])
    rerank(score, users [Q], candidates [Q, K], **inputs) -> (ids [Q, K] best first, ranker scores [Q, K])
    list_ranks(lists [Q, L], positive [Q]) -> the positive's position in each list, L where it is absent

`seen` is a list of Q int arrays of item ids (or a bool mask [Q, N]); the index skips them during its search, so
k unseen items come back (the full-ranking protocol).
`load_model(workdir)` restores a trained `jaxdl.main` run's model for either stage.
"""

import numpy as np

from jaxdl.serve.ann import Index


def _seen_lists(seen, num_queries: int) -> list[np.ndarray]:
    if seen is None:
        return [np.zeros(0, np.int64)] * num_queries
    if isinstance(seen, np.ndarray) and seen.dtype == bool:
        if seen.ndim != 2 or seen.shape[0] != num_queries:
            raise ValueError(f"seen mask {seen.shape} must be [{num_queries}, num_items]")
        return [np.flatnonzero(row) for row in seen]
    if len(seen) != num_queries:
        raise ValueError(f"seen has {len(seen)} lists for {num_queries} queries")
    return [np.asarray(s, np.int64).ravel() for s in seen]


def retrieve(index: Index, queries, k: int, seen=None) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64 [Q, k], scores float32 [Q, k]): each query's k best unseen items by the index, best first (the
    seen items are filtered inside the index search, `Index.search(exclude=...)`)."""
    queries = np.asarray(queries, np.float32)
    scores, ids = index.search(queries, k, exclude=None if seen is None else _seen_lists(seen, len(queries)))
    return ids, scores


def rerank(score, users, candidates, **inputs) -> tuple[np.ndarray, np.ndarray]:
    """(ids [Q, K], scores float32 [Q, K]): `candidates` int [Q, K] sorted by `score(users [Q], candidates,
    **inputs)` [Q, K], best first (ties keep the retrieval order)."""
    candidates = np.asarray(candidates)
    if candidates.ndim != 2 or len(candidates) != len(users):
        raise ValueError(f"candidates {candidates.shape} must be [{len(users)}, K] (one row per user)")
    s = np.asarray(score(users, candidates, **inputs), np.float32)
    if s.shape != candidates.shape:
        raise ValueError(f"the ranker returned scores {s.shape} for candidates {candidates.shape}")
    order = np.argsort(-s, axis=1, kind="stable")
    return np.take_along_axis(candidates, order, 1), np.take_along_axis(s, order, 1)


def list_ranks(lists, positive) -> np.ndarray:
    """int64 [Q]: the position of `positive[q]` in `lists[q]` (int [Q, L]), L where it is absent, so that
    `_recsys_metrics.hit_rate(r, k)` / `ndcg(r, k)` for k <= L score the final lists."""
    lists, positive = np.asarray(lists), np.asarray(positive)
    hit = lists == positive[:, None]
    return np.where(hit.any(1), np.argmax(hit, 1), lists.shape[1]).astype(np.int64)


def load_model(workdir: str, step: int | None = None):
    """(model, config) of a trained `jaxdl.main` run, restored on one device."""
    import jax
    from flax import nnx

    from jaxdl.state import restore_run

    run = restore_run(workdir, step, devices=jax.devices()[:1])
    return nnx.merge(run.graphdef, run.state["params"], run.state["rest"]), run.config
