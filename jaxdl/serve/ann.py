"""Maximum-inner-product search over item embeddings: the retrieval stage of a recommender (e.g. the two-tower
model's item vectors, `jaxdl.models.recsys.two_tower.Model.item_vectors`). Thin wrappers over kept libraries:

  - "exact": faiss `IndexFlatIP`, brute force, the reference every approximate index is measured against;
  - "hnsw":  faiss `IndexHNSWFlat` (Malkov & Yashunin 2018) with the inner-product metric; `M` links per node,
             `ef_construction`, `ef_search` (the search beam; recall rises with it);
  - "ivf":   faiss `IndexIVFFlat`: k-means into `nlist` cells (trained on the vectors themselves), a query scans
             its `nprobe` nearest cells; `nprobe = nlist` scans every vector (exact);
  - "hnswlib": hnswlib's HNSW ("ip" space, scores 1 - <q, v> converted back to <q, v>), for comparison.

Spec strings (`parse_spec`, the `--ann=` flag of `python -m jaxdl.recommend`): "exact", "hnsw", "hnsw:M=32,ef_search=64",
"ivf:nlist=32,nprobe=8", "hnswlib:M=16,ef_search=100". Vectors and queries are float32 [N, d] / [Q, d]; `search`
returns (scores float32 [Q, k], ids int64 [Q, k]) best first. Bad specs, shapes, k or non-finite vectors raise
ValueError naming them before an index is built.
"""

import dataclasses
import time

import numpy as np

KINDS = {
    "exact": {},
    "hnsw": {"M": 32, "ef_construction": 200, "ef_search": 64},
    "ivf": {"nlist": 32, "nprobe": 8},
    "hnswlib": {"M": 16, "ef_construction": 200, "ef_search": 64},
}


def parse_spec(spec: str) -> tuple[str, dict[str, int]]:
    """ "kind[:key=int,...]" -> (kind, parameters with the kind's defaults filled in)."""
    kind, _, rest = spec.strip().partition(":")
    if kind not in KINDS:
        raise ValueError(f"ANN spec {spec!r}: kind {kind!r} is not one of {tuple(KINDS)}")
    params = dict(KINDS[kind])
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq or key not in params:
            raise ValueError(f"ANN spec {spec!r}: {part!r} is not key=value with key in {tuple(params)}")
        try:
            params[key] = int(value)
        except ValueError:
            raise ValueError(f"ANN spec {spec!r}: {key}={value!r} is not an integer") from None
        if params[key] < 1:
            raise ValueError(f"ANN spec {spec!r}: {key}={params[key]} must be >= 1")
    return kind, params


def _as_matrix(x, what: str, dim: int | None = None) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(x, np.float32))
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{what} must be a non-empty float matrix [n, d], got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{what} have dimension {x.shape[1]}, the index {dim}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or inf (row {int(np.flatnonzero(~np.isfinite(x).all(1))[0])})")
    return x


@dataclasses.dataclass
class Index:
    """An inner-product index over `size` vectors of dimension `dim`; `build_seconds` is the wall time of building it."""

    kind: str
    params: dict
    size: int
    dim: int
    build_seconds: float
    _impl: object

    def search(self, queries, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 [Q, k], ids int64 [Q, k]) of the k largest <query, vector>, best first. `exclude`: a
        list of Q int arrays of ids query q must not return (e.g. items the user has seen), applied inside the
        search (faiss `IDSelector`, hnswlib `filter`) one query at a time, so k admissible results come back."""
        q = _as_matrix(queries, "queries", self.dim)
        if not 1 <= k <= self.size:
            raise ValueError(f"k={k} must be in [1, {self.size}] (the index holds {self.size} vectors)")
        if exclude is None:
            scores, ids = self._search(q, k, None)
        else:
            if len(exclude) != len(q):
                raise ValueError(f"exclude has {len(exclude)} id lists for {len(q)} queries")
            parts = [self._search(q[i : i + 1], k, np.unique(np.asarray(e, np.int64))) for i, e in enumerate(exclude)]
            scores, ids = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        if (ids < 0).any():  # faiss pads with -1 when the probed cells / beam hold fewer than k admissible vectors
            q_bad = int(np.flatnonzero((ids < 0).any(1))[0])
            raise ValueError(f"{self.kind} index {self.params}: query {q_bad} got fewer than k={k} results "
                             f"(raise nprobe / ef_search, or lower k)")  # fmt: skip
        return scores, ids

    def _search(self, q: np.ndarray, k: int, exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if exclude is not None and len(exclude) > self.size - k:
            raise ValueError(f"k={k} results requested but {len(exclude)} of the {self.size} ids are excluded")
        if self.kind == "hnswlib":
            banned = set(exclude.tolist()) if exclude is not None and len(exclude) else None
            kw = {"filter": lambda i: i not in banned} if banned else {}
            ids, dist = self._impl.knn_query(q, k=k, **kw)
            return (1.0 - dist).astype(np.float32), ids.astype(np.int64)
        if exclude is None or not len(exclude):
            return self._impl.search(q, k)
        import faiss

        keep = faiss.IDSelectorNot(faiss.IDSelectorBatch(exclude))
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(sel=keep, efSearch=self._impl.hnsw.efSearch)
        elif self.kind == "ivf":
            params = faiss.SearchParametersIVF(sel=keep, nprobe=self._impl.nprobe)
        else:
            params = faiss.SearchParameters(sel=keep)
        return self._impl.search(q, k, params=params)


def build(vectors, spec: str = "exact", *, threads: int = 1, seed: int = 0) -> Index:
    """The index `spec` (see `parse_spec`) over float32 [N, d] `vectors` (row n = item n), inner-product metric.
    `threads` fixes faiss's OpenMP threads (1 for per-query latency; faiss is otherwise free to use every core)."""
    import faiss

    kind, params = parse_spec(spec)
    x = _as_matrix(vectors, "vectors")
    n, d = x.shape
    start = time.perf_counter()
    faiss.omp_set_num_threads(threads)
    if kind == "exact":
        impl = faiss.IndexFlatIP(d)
        impl.add(x)
    elif kind == "hnsw":
        impl = faiss.IndexHNSWFlat(d, params["M"], faiss.METRIC_INNER_PRODUCT)
        impl.hnsw.efConstruction = params["ef_construction"]
        impl.add(x)
        impl.hnsw.efSearch = params["ef_search"]
    elif kind == "ivf":
        if params["nlist"] > n:
            raise ValueError(f"ANN spec {spec!r}: nlist={params['nlist']} exceeds the {n} vectors")
        quantizer = faiss.IndexFlatIP(d)
        impl = faiss.IndexIVFFlat(quantizer, d, params["nlist"], faiss.METRIC_INNER_PRODUCT)
        impl.cp.seed = seed
        impl.cp.min_points_per_centroid = 1  # small catalogues: no warning, k-means still runs
        impl.train(x)
        impl.add(x)
        impl.nprobe = min(params["nprobe"], params["nlist"])
    else:
        import hnswlib

        impl = hnswlib.Index(space="ip", dim=d)
        impl.init_index(max_elements=n, ef_construction=params["ef_construction"], M=params["M"], random_seed=seed)
        impl.set_num_threads(threads)
        impl.add_items(x, np.arange(n))
        impl.set_ef(params["ef_search"])
    return Index(kind, params, n, d, time.perf_counter() - start, impl)


def exact_top_k(vectors, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
    """NumPy reference: (scores [Q, k], ids [Q, k]) by full matmul + stable argsort (ties: lower id first)."""
    s = _as_matrix(queries, "queries") @ _as_matrix(vectors, "vectors").T
    ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, ids, 1), ids


def recall(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean over queries of |approx ∩ exact| / k for id lists [Q, k] (recall@k of an ANN against exact search)."""
    approx_ids, exact_ids = np.asarray(approx_ids), np.asarray(exact_ids)
    if approx_ids.shape != exact_ids.shape or approx_ids.ndim != 2:
        raise ValueError(f"id lists must both be [Q, k], got {approx_ids.shape} and {exact_ids.shape}")
    hits = [len(np.intersect1d(a, e)) for a, e in zip(approx_ids, exact_ids, strict=True)]
    return float(np.mean(hits) / exact_ids.shape[1])


def latency(index: Index, queries, k: int, repeats: int = 3) -> dict[str, float]:
    """Per-query wall time of `index.search` one query at a time (batch 1, the serving case): the median over
    queries of the best of `repeats` passes, and the mean, in microseconds."""
    q = _as_matrix(queries, "queries", index.dim)
    best = np.full(len(q), np.inf)
    for _ in range(repeats):
        for i in range(len(q)):
            t = time.perf_counter()
            index.search(q[i : i + 1], k)
            best[i] = min(best[i], time.perf_counter() - t)
    return {"median_us": float(np.median(best) * 1e6), "mean_us": float(np.mean(best) * 1e6)}
