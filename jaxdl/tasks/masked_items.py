"""Masked-item prediction (BERT4Rec's Cloze task, Sun et al. 2019) on users' item sequences.

A batch row (e.g. `movielens_loo` train) is a user's "history" int32 [B, L] (earlier items, most recent last,
left-padded with -1) and the next item "label" int32 [B]. The row's sequence is s = history[1:] ++ [label] (L
items: the oldest is dropped so the model sees the same length as at evaluation, where [mask] takes the label's
place). Each real (non-padding) item is replaced by the model's [mask] token (`model.mask_id`) independently with
probability `mask_prob`; with probability `last_prob` a row instead masks only its last item (the paper's extra
samples that mimic next-item evaluation). The loss is the softmax cross-entropy over the whole catalogue at the
masked positions only, averaged over all masked positions of the batch; the masks come from the `sampling` stream.

The model defines `mask_id`, `sequence(tokens [B, L], train, rngs) -> [B, L, dim]` and `catalogue_logits`
(`jaxdl.models.recsys.bert4rec`). Metrics: loss, `masked` (mean masked positions per row). Default evaluator:
`ranking` (the model appends [mask] to the history to score the next item).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.tasks.base import Task as BaseTask
from jaxdl.tasks.next_items import position_loss


def cloze(
    key: jax.Array, tokens: jax.Array, mask_id: int, mask_prob: float, last_prob: float = 0.0
) -> tuple[jax.Array, jax.Array]:
    """(inputs int [B, L], weights float32 [B, L]) for tokens int [B, L] (-1 = padding): each real token is
    replaced by `mask_id` with probability mask_prob (weight 1 there, 0 elsewhere); rows drawn with probability
    last_prob mask only their last token (when it is real). Padding is never masked."""
    k_tok, k_row = jax.random.split(key)
    real = tokens >= 0
    masked = real & jax.random.bernoulli(k_tok, mask_prob, tokens.shape)
    last_only = jax.random.bernoulli(k_row, last_prob, tokens.shape[:1])[:, None]
    is_last = jnp.arange(tokens.shape[1]) == tokens.shape[1] - 1
    masked = jnp.where(last_only, real & is_last, masked)
    return jnp.where(masked, mask_id, tokens), masked.astype(jnp.float32)


class Task(BaseTask):
    batch_keys = ("input", "label", "history")
    not_model_inputs = (*BaseTask.not_model_inputs, "negatives", "seen")

    def __init__(self, mask_prob: float = 0.2, last_prob: float = 0.0):
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"config.task.mask_prob={mask_prob} must be in (0, 1)")
        if not 0.0 <= last_prob <= 1.0:
            raise ValueError(f"config.task.last_prob={last_prob} must be in [0, 1]")
        self.mask_prob, self.last_prob = mask_prob, last_prob

    def check_batch(self, batch: dict) -> None:
        if batch["history"].ndim != 2:
            raise ValueError(f"batch 'history' has shape {batch['history'].shape}; expected int [batch, length]")

    def sequences(self, batch: dict) -> jax.Array:
        """int [B, L]: history[1:] ++ [label] (the Cloze task's unmasked sequences)."""
        return jnp.concatenate([batch["history"][:, 1:], batch["label"][:, None]], axis=1)

    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        tokens = self.sequences(batch)
        inputs, weights = cloze(rngs.sampling(), tokens, model.mask_id, self.mask_prob, self.last_prob)
        h = model.sequence(inputs, train=True, rngs=rngs)
        loss = position_loss(model, h, tokens, weights, "softmax", 1, rngs)
        return loss, {"masked": jnp.mean(jnp.sum(weights, 1))}

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="ranking")}
