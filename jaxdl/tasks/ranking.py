"""Top-K recommendation from implicit interactions (MovieLens leave-one-out): each batch row is a user and one
positive item; negatives are drawn inside the step, uniformly over the catalogue from the `sampling` stream (a
draw may hit another of the user's positives, as in the NCF reference code; with 1,682 items and ~100 positives per
user that is ~6 % of draws). Losses (`loss`):
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
import optax
from flax import nnx

from jaxdl.tasks.base import Task as BaseTask

LOSSES = ("bpr", "bce", "softmax", "in_batch")


class Task(BaseTask):
    batch_keys = ("input", "label")
    not_model_inputs = (*BaseTask.not_model_inputs, "negatives", "seen")

    def __init__(self, loss: str = "bpr", num_negatives: int = 1, reg: float = 0.0):
        if loss not in LOSSES:
            raise ValueError(f"config.task.loss={loss!r} is not one of {LOSSES}")
        if num_negatives < 1:
            raise ValueError(f"config.task.num_negatives={num_negatives} must be >= 1")
        if reg < 0:
            raise ValueError(f"config.task.reg={reg} must be >= 0")
        self.kind, self.num_negatives, self.reg = loss, num_negatives, reg

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
            neg = jax.random.randint(rngs.sampling(), (pos.shape[0], self.num_negatives), 0, model.num_items)
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
