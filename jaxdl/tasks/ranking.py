"""Top-K recommendation from implicit interactions (MovieLens leave-one-out): each batch row is a user and one
positive item; negatives are drawn inside the step from the `sampling` stream (`negatives`): "uniform" over the
catalogue (a draw may hit another of the user's positives, as in the NCF reference code; with 1,682 items and ~100
positives per user that is ~6 % of draws), or "unseen": uniform over the items the user never interacted with in
the training split `dataset` (as RecBole samples), drawn exactly: a uniform index below the user's number of unseen
items into the user's sorted unseen-item row. Losses (`loss`):
  - "bpr" (Rendle et al. 2009): -mean log sigmoid(s(u, i+) - s(u, i-)), `num_negatives` per positive;
  - "bce" (He et al. 2017, NeuMF's log loss): sigmoid cross-entropy of the positive (label 1) and
    `num_negatives` sampled negatives (label 0), summed per row, mean over rows;
  - "softmax": cross-entropy of the positive against the whole catalogue (`model.score_all`);
  - "in_batch": cross-entropy of row b's positive against the batch's positives (`model.in_batch_logits`
    [B, B], logQ-corrected by the model); a column holding the same item as row b's positive (an accidental hit)
    is removed from row b's softmax (two-tower retrieval, Yi et al. 2019).
plus `reg` * mean model.l2(user, [i+, negatives]). Batches: "input" user int32 [B], "label" positive item
int32 [B]; "negatives" and "seen" (evaluation fields) are not model inputs; other keys (history, side features)
are. Metrics: loss, and for bpr/bce `pair_accuracy` (fraction of (positive, negative) pairs ordered right).
Default evaluator: `ranking` (HR/NDCG/MRR@10 sampled and full, coverage) on config.data.eval_split.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdl.tasks._host_data import split_columns
from jaxdl.tasks.base import Task as BaseTask

LOSSES = ("bpr", "bce", "softmax", "in_batch")
NEGATIVES = ("uniform", "unseen")


def seen_matrix(users: np.ndarray, items: np.ndarray, num_items: int) -> np.ndarray:
    """bool [max user + 1, num_items]: True where the user interacted with the item (the rows of a split)."""
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    if items.size and (items.min() < 0 or items.max() >= num_items):
        raise ValueError(
            f"negatives='unseen': item ids must lie in [0, {num_items}), got [{items.min()}, {items.max()}]"
        )
    seen = np.zeros((int(users.max(initial=-1)) + 1, num_items), bool)
    seen[users, items] = True
    return seen


class Task(BaseTask):
    batch_keys = ("input", "label")
    not_model_inputs = (*BaseTask.not_model_inputs, "negatives", "seen")

    def __init__(
        self,
        loss: str = "bpr",
        num_negatives: int = 1,
        reg: float = 0.0,
        negatives: str = "uniform",
        dataset: str = "",
        split: str = "train",
        data_dir: str = "",
    ):
        if negatives not in NEGATIVES:
            raise ValueError(f"config.task.negatives={negatives!r} is not one of {NEGATIVES}")
        if negatives == "unseen" and not dataset:
            raise ValueError(
                "config.task.dataset is required with negatives='unseen': the training split whose interactions the "
                "negatives avoid (e.g. movielens_loo)"
            )
        if loss not in LOSSES:
            raise ValueError(f"config.task.loss={loss!r} is not one of {LOSSES}")
        if num_negatives < 1:
            raise ValueError(f"config.task.num_negatives={num_negatives} must be >= 1")
        if reg < 0:
            raise ValueError(f"config.task.reg={reg} must be >= 0")
        self.kind, self.num_negatives, self.reg = loss, num_negatives, reg
        self.negatives, self.dataset, self.split, self.data_dir = negatives, dataset, split, data_dir
        self._seen: np.ndarray | None = None

    def seen(self, num_items: int) -> np.ndarray:
        """bool [users, num_items] of the training split's interactions (read on first use)."""
        if self._seen is None:
            columns = split_columns(self.dataset, self.split, self.data_dir)
            self._seen = seen_matrix(columns["input"], columns["label"], num_items)
        return self._seen

    def draw_negatives(self, key: jax.Array, user: jax.Array, num_items: int) -> jax.Array:
        """int32 [B, num_negatives]: uniform over the catalogue, or over the user's unseen items (an index drawn
        uniformly below the user's count of unseen items into that user's sorted unseen-item row: exact, O(B·n))."""
        shape = (user.shape[0], self.num_negatives)
        if self.negatives == "uniform":
            return jax.random.randint(key, shape, 0, num_items)
        seen = self.seen(num_items)
        unseen = np.argsort(seen, axis=1, kind="stable").astype(np.int32)  # each row: its unseen items first
        count = (~seen).sum(1).astype(np.int32)
        if (count == 0).any():
            raise ValueError(f"negatives='unseen': user {int(np.flatnonzero(count == 0)[0])} has seen every item")
        u = jnp.clip(user, 0, seen.shape[0] - 1)
        n = jnp.asarray(count)[u][:, None]
        k = jnp.minimum(jnp.floor(jax.random.uniform(key, shape) * n).astype(jnp.int32), n - 1)
        return jnp.asarray(unseen)[u[:, None], k]

    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        user, pos, inputs = batch["input"], batch["label"], self.model_inputs(batch)
        if self.kind == "softmax":
            logits = model.score_all(user, train=True, rngs=rngs, **inputs)
            loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, pos))
            metrics = {}
            items = pos[:, None]
        elif self.kind == "in_batch":
            logits = model.in_batch_logits(user, pos, **inputs)
            same = (pos[:, None] == pos[None, :]) & ~jnp.eye(pos.shape[0], dtype=bool)
            logits = jnp.where(same, -jnp.inf, logits)
            loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, jnp.arange(pos.shape[0])))
            metrics = {"in_batch_accuracy": jnp.mean(jnp.argmax(logits, 1) == jnp.arange(pos.shape[0]))}
            items = pos[:, None]
        else:
            neg = self.draw_negatives(rngs.sampling(), user, model.num_items)
            items = jnp.concatenate([pos[:, None], neg], axis=1)
            s = model.score(user, items, train=True, rngs=rngs, **inputs)
            diff = s[:, :1] - s[:, 1:]
            if self.kind == "bpr":
                loss = -jnp.mean(jax.nn.log_sigmoid(diff))
            else:
                labels = jnp.zeros_like(s).at[:, 0].set(1.0)
                loss = jnp.mean(jnp.sum(optax.sigmoid_binary_cross_entropy(s, labels), axis=1))
            metrics = {"pair_accuracy": jnp.mean((diff > 0).astype(jnp.float32))}
        if self.reg:
            loss = loss + self.reg * jnp.mean(model.l2(user, items))
        return loss, metrics

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="ranking")}
