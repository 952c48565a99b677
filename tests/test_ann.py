"""ANN indexes (jaxdl/serve/ann.py) with exhaustive settings against a NumPy brute-force top-K, recall on a hand
case, bad specs / shapes; the retrieve -> re-rank pipeline (jaxdl/serve/rerank.py) on a tiny hand-built catalogue
whose answers are worked out by hand in the comments."""

import numpy as np
import pytest

from jaxdl.evaluators import _recsys_metrics as M
from jaxdl.serve import ann, rerank


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), rng.normal(size=(25, 16)).astype(np.float32)


@pytest.mark.parametrize(
    "spec",
    ["exact", "ivf:nlist=8,nprobe=8", "hnsw:M=16,ef_construction=400,ef_search=400", "hnswlib:M=16,ef_search=400"],
)
def test_exhaustive_settings_equal_exact_top_k(vectors, spec):
    """IVF probing every cell and HNSW with a beam as large as the catalogue return the brute-force top-K, also
    with per-query excluded ids."""
    x, q = vectors
    want_scores, want_ids = ann.exact_top_k(x, q, 50)
    index = ann.build(x, spec)
    scores, ids = index.search(q, 50)
    assert ids.shape == scores.shape == (25, 50)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    assert ann.recall(ids, want_ids) == 1.0
    # excluded ids (a user's seen items) filtered inside the search: the brute-force top-K of the rest
    rng = np.random.default_rng(1)
    exclude = [rng.choice(400, size=rng.integers(0, 200), replace=False) for _ in range(len(q))]
    s = q @ x.T
    for row, e in zip(s, exclude, strict=True):
        row[e] = -np.inf
    want = np.argsort(-s, axis=1, kind="stable")[:, :50]
    np.testing.assert_array_equal(index.search(q, 50, exclude=exclude)[1], want)


def test_small_beam_is_approximate_and_recall_counts_overlap(vectors):
    """recall = mean |approx ∩ exact| / k: a hand case, then IVF with 1 of 16 cells probed loses results."""
    assert ann.recall(np.array([[1, 2, 3, 4], [5, 6, 7, 8]]), np.array([[4, 3, 9, 1], [8, 7, 6, 5]])) == (3 + 4) / 8
    x, q = vectors
    _, exact = ann.exact_top_k(x, q, 10)
    _, ids = ann.build(x, "ivf:nlist=16,nprobe=1").search(q, 10)
    assert ann.recall(ids, exact) < 0.9


@pytest.mark.parametrize(
    "spec, message",
    [
        ("annoy", "kind 'annoy' is not one of"),
        ("hnsw:M=0", "M=0 must be >= 1"),
        ("hnsw:ef=5", "'ef=5' is not key=value with key in"),
        ("ivf:nlist=x", "nlist='x' is not an integer"),
        ("ivf:nlist=1000", "nlist=1000 exceeds the 400 vectors"),
    ],
)
def test_bad_specs_raise(vectors, spec, message):
    with pytest.raises(ValueError, match=message):
        ann.build(vectors[0], spec)


def test_bad_inputs_raise(vectors):
    x, q = vectors
    index = ann.build(x, "exact")
    with pytest.raises(ValueError, match="k=401 must be in"):
        index.search(q, 401)
    with pytest.raises(ValueError, match="queries have dimension 8, the index 16"):
        index.search(q[:, :8], 5)
    bad = x.copy()
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf \\(row 7\\)"):
        ann.build(bad, "hnsw")


def test_retrieve_then_rerank_hand_built():
    """6 items on a line of scores: item vectors v_i = (i, 1) and one query (1, 0), so retrieval scores = i and
    the exact order is 5, 4, 3, 2, 1, 0. The user has seen item 4: the 3 unseen candidates are 5, 3, 2. The ranker
    prefers low ids (score = -item), so re-ranking gives 2, 3, 5."""
    items = np.array([[i, 1.0] for i in range(6)], np.float32)
    calls = []

    def ranker(users, candidates, bonus):
        calls.append((users.tolist(), candidates.tolist()))
        return -candidates.astype(np.float32) + bonus

    for spec in ("exact", "hnsw:ef_search=6", "ivf:nlist=2,nprobe=2", "hnswlib:ef_search=6"):
        calls.clear()
        index = ann.build(items, spec)
        ids, scores = rerank.retrieve(index, np.array([[1.0, 0.0]]), 3, seen=[np.array([4])])
        np.testing.assert_array_equal(ids, [[5, 3, 2]])
        np.testing.assert_allclose(scores, [[5, 3, 2]])
        final, final_scores = rerank.rerank(ranker, np.array([0]), ids, bonus=np.float32(0.5))
        np.testing.assert_array_equal(final, [[2, 3, 5]])
        np.testing.assert_allclose(final_scores, [[-1.5, -2.5, -4.5]])
        assert calls == [([0], [[5, 3, 2]])]  # the ranker saw only the retrieved, unseen candidates
    # the same with a bool seen mask, and the positions of held-out items in the final lists
    ids, _ = rerank.retrieve(ann.build(items), np.array([[1.0, 0.0], [-1.0, 0.0]]), 2, seen=np.eye(2, 6, 4, bool))
    np.testing.assert_array_equal(ids, [[5, 3], [0, 1]])  # query 2: scores -i, best 0, 1 (item 5 seen)
    r = rerank.list_ranks(np.array([[2, 3, 5], [0, 1, 4]]), np.array([5, 3]))
    np.testing.assert_array_equal(r, [2, 3])
    np.testing.assert_allclose(M.hit_rate(r, 3), [1, 0])
    np.testing.assert_allclose(M.ndcg(r, 3), [0.5, 0])


def test_pipeline_errors():
    index = ann.build(np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match="k=3 results requested but 2 of the 4 ids are excluded"):
        rerank.retrieve(index, np.eye(1, 4, dtype=np.float32), 3, seen=[np.array([0, 1])])
    with pytest.raises(ValueError, match="seen has 2 lists for 1 queries"):
        rerank.retrieve(index, np.eye(1, 4, dtype=np.float32), 1, seen=[[0], [1]])
    with pytest.raises(ValueError, match="returned scores \\(1, 1\\) for candidates \\(1, 2\\)"):
        rerank.rerank(lambda u, c: np.zeros((1, 1)), np.array([0]), np.array([[0, 1]]))
