"""Next-item prediction at every position of a user's sequence (SASRec training, Kang & McAuley 2018).

A batch row (e.g. `movielens_loo` train) is a user's "history" int32 [B, L] (earlier items, most recent last,
left-padded with -1) and its next item "label" int32 [B]. The sequence s = history ++ [label] gives L next-item
targets: the causal model's output at position t (which has seen s_0..s_t) must score s_{t+1}. Positions whose
input or target is padding do not count. Compared with a loss at the last position only (`jaxdl.tasks.ranking`
loss="softmax", one target per row), every row here trains L targets for the same transformer pass, which is why
SASRec trains in minutes instead of hours (experiments/recsys/sequential/README.md).

Losses (`loss`), averaged over the counted positions:
  - "softmax": cross-entropy of the target against the whole catalogue (`model.catalogue_logits`);
  - "bce": Kang & McAuley's: -log sigmoid(h.e_target) - sum over `num_negatives` items drawn uniformly over the
    catalogue per position (the `sampling` stream; a draw may hit a positive) of log(1 - sigmoid(h.e_neg)).
The model defines `sequence(history [B, L], train, rngs) -> [B, L, dim]`, `item_vectors(items) -> [..., dim]` and
`catalogue_logits(h [..., dim]) -> float32 [..., num_items]` (`jaxdl.models.recsys.sasrec`). Metrics: loss,
`positions` (mean counted positions per row). Default evaluator: `ranking` (HR/NDCG/MRR sampled and full).
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxdl.tasks.base import Task as BaseTask

LOSSES = ("softmax", "bce")


def position_loss(model, h: jax.Array, targets: jax.Array, weights: jax.Array, kind: str, num_negatives: int, rngs):
    """Weighted mean over positions of the loss `kind` ("softmax" | "bce") of outputs h float [B, L, dim] against
    target items int [B, L] (any value where weights is 0), weights float32 [B, L] (0/1) -> float32 scalar.
    Shared by the next-item (SASRec) and masked-item (BERT4Rec) tasks."""
    safe = jnp.where(weights > 0, targets, 0)
    if kind == "softmax":
        per = optax.softmax_cross_entropy_with_integer_labels(model.catalogue_logits(h), safe)
    else:
        neg = jax.random.randint(rngs.sampling(), (*targets.shape, num_negatives), 0, model.num_items)
        pos = jnp.sum(h * model.item_vectors(safe), -1).astype(jnp.float32)
        negs = jnp.einsum("bld,blnd->bln", h, model.item_vectors(neg)).astype(jnp.float32)
        per = -jax.nn.log_sigmoid(pos) - jnp.sum(jax.nn.log_sigmoid(-negs), -1)
    return jnp.sum(per * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def check_options(loss: str, num_negatives: int) -> None:
    if loss not in LOSSES:
        raise ValueError(f"config.task.loss={loss!r} is not one of {LOSSES}")
    if num_negatives < 1:
        raise ValueError(f"config.task.num_negatives={num_negatives} must be >= 1")


class Task(BaseTask):
    batch_keys = ("input", "label", "history")
    not_model_inputs = (*BaseTask.not_model_inputs, "negatives", "seen")

    def __init__(self, loss: str = "softmax", num_negatives: int = 1):
        check_options(loss, num_negatives)
        self.kind, self.num_negatives = loss, num_negatives

    def check_batch(self, batch: dict) -> None:
        if batch["history"].ndim != 2:
            raise ValueError(f"batch 'history' has shape {batch['history'].shape}; expected int [batch, length]")

    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        seq = jnp.concatenate([batch["history"], batch["label"][:, None]], axis=1)
        inputs, targets = seq[:, :-1], seq[:, 1:]
        weights = ((inputs >= 0) & (targets >= 0)).astype(jnp.float32)
        h = model.sequence(inputs, train=True, rngs=rngs)
        loss = position_loss(model, h, targets, weights, self.kind, self.num_negatives, rngs)
        return loss, {"positions": jnp.mean(jnp.sum(weights, 1))}

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="ranking")}
