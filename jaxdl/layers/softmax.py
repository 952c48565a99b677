"""Output layers for large vocabularies: full, sampled and hierarchical softmax, selectable by name (`make`).

Every layer maps hidden states `h` float [..., dim] and integer targets [...] (negative = ignored, the project's
label convention) to per-position training losses float32 [...] (0 where the target is ignored):

- `FullSoftmax` ("full"): logits h W + b over the whole vocabulary, cross-entropy.
- `SampledSoftmax` ("sampled"): importance-sampled softmax (Bengio & Senecal 2008; Jean et al. 2015, as in
  TensorFlow's `sampled_softmax_loss`). In training, K negatives S are drawn once per call (shared by all
  positions) from a proposal q ("unigram": counts^power, word2vec's 0.75 by default; "log_uniform": Zipf over the
  ids, p(k) = log((k+2)/(k+1)) / log(V+1), for ids sorted by decreasing frequency; "uniform"), with or without
  replacement. Each logit s_j of the true class and of the negatives is corrected by -log E[count of j in S]
  (K q_j with replacement; without replacement 1 - (1 - q_j)^T, T solving sum_j 1 - (1 - q_j)^T = K, exact for a
  uniform q and TensorFlow's approximation otherwise); a negative equal to a position's target (an "accidental
  hit") is removed from that position's softmax. Loss = -log softmax([s_t - log Q_t, s_S - log Q_S])[0]. With
  `train=False` the loss is the exact full-softmax cross-entropy over the same weights.
- `HierarchicalSoftmax` ("hierarchical"): a binary tree over the vocabulary (Huffman from unigram counts, as in
  word2vec, or balanced); each of the V - 1 internal nodes n holds a vector u_n and bias c_n, and
  log p(w | h) = sum over the path root -> w of log sigmoid(sign * (h . u_n + c_n)), sign +1 for a left turn,
  -1 for a right one, so the V leaf probabilities sum to 1. The paths are padded arrays [V, depth] (node ids,
  signs, mask), so the loss is one gather + einsum and jits.

All layers also give exact `log_prob(h, targets)` [...] and `log_probs(h)` [..., V] for evaluation. Targets
>= vocab_size raise a ValueError naming `targets` when they are concrete; under jit they give a NaN loss (which
the trainer's nan_guard reports). Output vectors are rows, kernel [V (or V - 1 nodes), dim] with logical axes
("vocab", "embed"), so the sampled and hierarchical layers gather contiguous rows.
"""

import heapq

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdl.layers.dtypes import to_dtype

NAMES = ("full", "sampled", "hierarchical")
PROPOSALS = ("unigram", "log_uniform", "uniform")
TREES = ("huffman", "balanced")


class Constant(nnx.Variable):
    """A fixed array of a layer (proposal log-probabilities, tree paths): not trained, carried with the state."""


def _check_inputs(h: jax.Array, targets: jax.Array, dim: int, vocab_size: int) -> None:
    if h.shape[-1:] != (dim,):
        raise ValueError(f"hidden states h {h.shape} must end with dim={dim}")
    if h.shape[:-1] != targets.shape:
        raise ValueError(f"targets {targets.shape} do not match hidden states h {h.shape} (expected h[..., dim])")
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        raise TypeError(f"targets must be integers, got dtype {targets.dtype}")
    if (
        not isinstance(targets, jax.core.Tracer)
        and targets.size
        and (bad := int(np.asarray(targets).max())) >= vocab_size
    ):
        raise ValueError(f"targets hold id {bad}, outside the vocabulary [0, {vocab_size}) (negative = ignored)")


def _finish(nll: jax.Array, targets: jax.Array, vocab_size: int) -> jax.Array:
    """0 at ignored (negative) targets, NaN at targets >= vocab_size (only reachable under jit), else nll."""
    nll = jnp.where(targets >= vocab_size, jnp.nan, nll)
    return jnp.where(targets < 0, 0.0, nll).astype(jnp.float32)


def _rng_key(rngs) -> jax.Array:
    """A key from a jax key, or from nnx.Rngs' `sampling` stream (else `dropout`, else `default`)."""
    if isinstance(rngs, jax.Array):
        return rngs
    if isinstance(rngs, nnx.Rngs):
        for stream in ("sampling", "dropout", "default"):
            if stream in rngs:
                return getattr(rngs, stream)()
        raise ValueError("rngs has none of the streams 'sampling', 'dropout', 'default' (needed to draw negatives)")
    raise ValueError(f"rngs must be a jax key or nnx.Rngs when train=True, got {type(rngs).__name__}")


class FullSoftmax(nnx.Module):
    """Logits h W^T + b (W: [vocab, dim]) + softmax cross-entropy."""

    def __init__(self, dim: int, vocab_size: int, *, dtype: str = "float32", param_dtype: str = "float32",
                 rngs: nnx.Rngs):  # fmt: skip
        if dim < 1 or vocab_size < 2:
            raise ValueError(f"need dim >= 1 and vocab_size >= 2, got dim={dim}, vocab_size={vocab_size}")
        self.dim, self.vocab_size, self.dtype = dim, vocab_size, to_dtype(dtype)
        pdt = to_dtype(param_dtype)
        init = nnx.with_partitioning(nnx.initializers.lecun_normal(in_axis=1, out_axis=0), ("vocab", "embed"))
        self.kernel = nnx.Param(init(rngs.params(), (vocab_size, dim), pdt))  # rows: contiguous gathers
        self.bias = nnx.Param(nnx.with_partitioning(nnx.initializers.zeros, ("vocab",))(None, (vocab_size,), pdt))

    def logits(self, h: jax.Array) -> jax.Array:
        """float32 [..., V]."""
        out = jnp.einsum("...d,vd->...v", h.astype(self.dtype), self.kernel[...].astype(self.dtype))
        out = out + self.bias[...].astype(self.dtype)
        return out.astype(jnp.float32)

    def log_probs(self, h: jax.Array) -> jax.Array:
        """Exact log p(w | h) for every w: float32 [..., V]."""
        return jax.nn.log_softmax(self.logits(h), axis=-1)

    def log_prob(self, h: jax.Array, targets: jax.Array) -> jax.Array:
        """Exact log p(target | h): float32 [...] (0 at ignored targets)."""
        return -self.exact_loss(h, targets)

    def exact_loss(self, h: jax.Array, targets: jax.Array) -> jax.Array:
        _check_inputs(h, targets, self.dim, self.vocab_size)
        logits = self.logits(h)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.clip(targets, 0, self.vocab_size - 1))
        return _finish(nll, targets, self.vocab_size)

    def __call__(self, h: jax.Array, targets: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        """Per-position cross-entropy float32 [...] (0 at ignored targets)."""
        del train, rngs
        return self.exact_loss(h, targets)


def proposal_probs(kind: str, vocab_size: int, counts=None, power: float = 0.75) -> np.ndarray:
    """float64 [V] proposal distribution q of the sampled softmax (see the module docstring)."""
    if kind == "uniform":
        return np.full(vocab_size, 1.0 / vocab_size)
    if kind == "log_uniform":
        k = np.arange(vocab_size, dtype=np.float64)
        return np.log((k + 2) / (k + 1)) / np.log(vocab_size + 1)
    if kind == "unigram":
        if counts is None:
            raise ValueError("proposal='unigram' needs counts (token counts [vocab_size])")
        counts = np.asarray(counts, np.float64)
        if counts.shape != (vocab_size,) or (counts < 0).any() or counts.sum() <= 0:
            raise ValueError(f"counts must be [vocab_size={vocab_size}] non-negative with a positive sum")
        q = (counts + 1e-3) ** power  # every id keeps a small chance, so log Q stays finite
        return q / q.sum()
    raise ValueError(f"proposal {kind!r} is unknown; proposals: {', '.join(PROPOSALS)}")


def expected_counts(q: np.ndarray, num_sampled: int, unique: bool) -> np.ndarray:
    """E[count of j among the negatives]: K q_j with replacement, 1 - (1 - q_j)^T without (T: sum = K)."""
    if not unique:
        return num_sampled * q
    lo, hi = float(num_sampled), 2.0 * num_sampled  # T = K draws give at most K distinct ids: sum <= K there
    while np.sum(1 - (1 - q) ** hi) < num_sampled and hi < 1e15:
        hi *= 2
    for _ in range(200):  # bisection on the monotone sum_j 1 - (1 - q_j)^T
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.sum(1 - (1 - q) ** mid) < num_sampled else (lo, mid)
    return np.clip(1 - (1 - q) ** hi, 1e-30, 1.0)


class SampledSoftmax(FullSoftmax):
    """Full-softmax weights trained with K sampled negatives (exact full softmax when train=False)."""

    def __init__(self, dim: int, vocab_size: int, *, num_sampled: int = 64, proposal: str = "log_uniform",
                 counts=None, power: float = 0.75, unique: bool = True, remove_accidental_hits: bool = True,
                 dtype: str = "float32", param_dtype: str = "float32", rngs: nnx.Rngs):  # fmt: skip
        q = proposal_probs(proposal, vocab_size, counts, power)
        super().__init__(dim, vocab_size, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        if not 1 <= num_sampled <= (vocab_size if unique else np.inf):
            raise ValueError(f"num_sampled={num_sampled} must be in [1, vocab_size={vocab_size}] (unique={unique})")
        self.num_sampled, self.unique, self.remove_accidental_hits = num_sampled, unique, remove_accidental_hits
        self.proposal = proposal
        self.q = Constant(jnp.asarray(q, jnp.float32))
        self.log_expected = Constant(jnp.asarray(np.log(expected_counts(q, num_sampled, unique)), jnp.float32))

    def sample(self, key: jax.Array) -> jax.Array:
        """int32 [K] negative ids drawn from q."""
        ids = jax.random.choice(key, self.vocab_size, (self.num_sampled,), replace=not self.unique, p=self.q[...])
        return ids.astype(jnp.int32)

    def sampled_loss(self, h: jax.Array, targets: jax.Array, negatives: jax.Array, *, correct: bool = True):
        """Loss float32 [...] for given negatives int [K]; `correct=False` drops the -log Q correction."""
        _check_inputs(h, targets, self.dim, self.vocab_size)
        t = jnp.clip(targets, 0, self.vocab_size - 1)
        w = self.kernel[...].astype(self.dtype)
        b = self.bias[...].astype(jnp.float32)
        x = h.astype(self.dtype)
        true_logit = jnp.einsum("...d,...d->...", x, w[t]).astype(jnp.float32) + b[t]
        neg_logits = jnp.einsum("...d,kd->...k", x, w[negatives]).astype(jnp.float32) + b[negatives]
        if correct:
            true_logit = true_logit - self.log_expected[...][t]
            neg_logits = neg_logits - self.log_expected[...][negatives]
        if self.remove_accidental_hits:
            neg_logits = jnp.where(negatives == t[..., None], -jnp.inf, neg_logits)
        logits = jnp.concatenate([true_logit[..., None], neg_logits], axis=-1)
        nll = -jax.nn.log_softmax(logits, axis=-1)[..., 0]
        return _finish(nll, targets, self.vocab_size)

    def __call__(self, h: jax.Array, targets: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        """train=True: the sampled loss with negatives drawn from `rngs`; else the exact cross-entropy."""
        if not train:
            return self.exact_loss(h, targets)
        return self.sampled_loss(h, targets, self.sample(_rng_key(rngs)))


def _huffman_children(counts: np.ndarray) -> tuple[list[int], list[int], int]:
    """left/right child of each internal node (>= 0: internal node id, < 0: leaf -1 - word) and the root."""
    heap = [(float(c), i, -1 - i) for i, c in enumerate(counts)]  # (count, tie-break, node)
    heapq.heapify(heap)
    left, right, order = [], [], len(counts)
    while len(heap) > 1:
        c1, _, a = heapq.heappop(heap)
        c2, _, b = heapq.heappop(heap)
        left.append(a)
        right.append(b)
        heapq.heappush(heap, (c1 + c2, order, len(left) - 1))
        order += 1
    return left, right, len(left) - 1


def _balanced_children(vocab_size: int) -> tuple[list[int], list[int], int]:
    left, right = [], []

    def build(lo: int, hi: int) -> int:  # words [lo, hi) -> node
        if hi - lo == 1:
            return -1 - lo
        node = len(left)
        left.append(0)
        right.append(0)
        mid = (lo + hi + 1) // 2
        left[node], right[node] = build(lo, mid), build(mid, hi)
        return node

    return left, right, build(0, vocab_size)


def tree_paths(vocab_size: int, tree: str = "huffman", counts=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(nodes int32 [V, D], signs float32 [V, D] (+1 left / -1 right), mask float32 [V, D]) of each word's path
    from the root; D is the tree depth, shorter paths are padded with node 0, sign 0, mask 0."""
    if tree == "huffman":
        if counts is None:
            raise ValueError("tree='huffman' needs counts (token counts [vocab_size])")
        counts = np.asarray(counts, np.float64)
        if counts.shape != (vocab_size,) or (counts < 0).any():
            raise ValueError(f"counts must be [vocab_size={vocab_size}] and non-negative, got shape {counts.shape}")
        left, right, root = _huffman_children(counts)
    elif tree == "balanced":
        left, right, root = _balanced_children(vocab_size)
    else:
        raise ValueError(f"tree {tree!r} is unknown; trees: {', '.join(TREES)}")
    paths: list[list[tuple[int, float]]] = [[] for _ in range(vocab_size)]
    stack = [(root, [])]
    while stack:
        node, path = stack.pop()
        for child, sign in ((left[node], 1.0), (right[node], -1.0)):
            step = path + [(node, sign)]
            if child < 0:
                paths[-1 - child] = step
            else:
                stack.append((child, step))
    depth = max(len(p) for p in paths)
    nodes = np.zeros((vocab_size, depth), np.int32)
    signs = np.zeros((vocab_size, depth), np.float32)
    for w, p in enumerate(paths):
        nodes[w, : len(p)] = [n for n, _ in p]
        signs[w, : len(p)] = [s for _, s in p]
    return nodes, signs, (signs != 0).astype(np.float32)


class HierarchicalSoftmax(nnx.Module):
    """Binary-tree softmax: V - 1 sigmoid nodes, log p(w) summed along w's padded path."""

    def __init__(self, dim: int, vocab_size: int, *, tree: str = "huffman", counts=None, dtype: str = "float32",
                 param_dtype: str = "float32", rngs: nnx.Rngs):  # fmt: skip
        if dim < 1 or vocab_size < 2:
            raise ValueError(f"need dim >= 1 and vocab_size >= 2, got dim={dim}, vocab_size={vocab_size}")
        self.dim, self.vocab_size, self.tree, self.dtype = dim, vocab_size, tree, to_dtype(dtype)
        nodes, signs, mask = tree_paths(vocab_size, tree, counts)
        self.nodes, self.signs, self.mask = (Constant(jnp.asarray(a)) for a in (nodes, signs, mask))
        pdt = to_dtype(param_dtype)
        init = nnx.with_partitioning(nnx.initializers.lecun_normal(in_axis=1, out_axis=0), ("vocab", "embed"))
        self.kernel = nnx.Param(init(rngs.params(), (vocab_size - 1, dim), pdt))  # one row per internal node
        self.bias = nnx.Param(nnx.with_partitioning(nnx.initializers.zeros, ("vocab",))(None, (vocab_size - 1,), pdt))

    @property
    def depth(self) -> int:
        return self.nodes.shape[1]

    def _path_log_prob(self, h: jax.Array, words: jax.Array) -> jax.Array:
        """log p(words | h): h [..., dim], words int [...] in [0, V) -> float32 [...]."""
        nodes, signs, mask = self.nodes[...][words], self.signs[...][words], self.mask[...][words]  # [..., D]
        u = self.kernel[...].astype(self.dtype)[nodes]  # [..., D, dim]
        s = jnp.einsum("...d,...kd->...k", h.astype(self.dtype), u).astype(jnp.float32)
        s = s + self.bias[...].astype(jnp.float32)[nodes]
        return jnp.sum(mask * jax.nn.log_sigmoid(signs * s), axis=-1)

    def log_prob(self, h: jax.Array, targets: jax.Array) -> jax.Array:
        """Exact log p(target | h): float32 [...] (0 at ignored targets)."""
        _check_inputs(h, targets, self.dim, self.vocab_size)
        lp = self._path_log_prob(h, jnp.clip(targets, 0, self.vocab_size - 1))
        return -_finish(-lp, targets, self.vocab_size)

    def log_probs(self, h: jax.Array) -> jax.Array:
        """Exact log p(w | h) for every w: float32 [..., V] (memory [..., V, depth])."""
        if h.shape[-1:] != (self.dim,):
            raise ValueError(f"hidden states h {h.shape} must end with dim={self.dim}")
        s = jnp.einsum("...d,nd->...n", h.astype(self.dtype), self.kernel[...].astype(self.dtype)).astype(jnp.float32)
        s = s + self.bias[...].astype(jnp.float32)  # [..., V-1]
        per_node = jnp.take(s, self.nodes[...], axis=-1)  # [..., V, D]
        return jnp.sum(self.mask[...] * jax.nn.log_sigmoid(self.signs[...] * per_node), axis=-1)

    def __call__(self, h: jax.Array, targets: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        """Per-position -log p(target | h) float32 [...] (0 at ignored targets)."""
        del train, rngs
        return -self.log_prob(h, targets)


def make(name: str, dim: int, vocab_size: int, *, rngs: nnx.Rngs, **kwargs) -> nnx.Module:
    """The output layer called `name` ("full" | "sampled" | "hierarchical"); kwargs go to its constructor."""
    layers = {"full": FullSoftmax, "sampled": SampledSoftmax, "hierarchical": HierarchicalSoftmax}
    if name not in layers:
        raise ValueError(f"softmax name {name!r} is unknown; names: {', '.join(NAMES)}")
    return layers[name](dim, vocab_size, rngs=rngs, **kwargs)


def mean_loss(losses: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean of per-position losses over the non-ignored targets (targets >= 0)."""
    valid = (targets >= 0).astype(jnp.float32)
    return jnp.sum(losses * valid) / jnp.maximum(valid.sum(), 1.0)
