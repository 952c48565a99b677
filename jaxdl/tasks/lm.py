"""Language modelling: next-token cross-entropy over `[batch, seq]` labels (labels < 0 ignored), by full logits or
by the model's own per-label losses.

A model whose output layer never builds full training logits (the sampled and hierarchical softmax heads of
gpt / rnn_lm, `jaxdl.models.language._lm_head`) sets `uses_label_losses = True` and defines

    label_losses(x, labels, *, train, rngs, **inputs) -> float32 [*labels.shape], 0 where labels < 0

(`rngs` streams `dropout` and `sampling`). The loss is then the same masked mean over the same valid labels
(`jaxdl.losses.label_loss_sums`), so ignored labels, "mask", gradient accumulation and the NaN guard behave as
with full logits; mixup batches raise. No training accuracy is logged for such a model: an exact argmax needs the
full [batch, seq, vocab] scores the head exists to avoid. Evaluation uses `model(x, train=False)`, whose logits
such a model defines by its exact distribution, so eval loss and perplexity are comparable across heads.
Default evaluator: perplexity (loss, perplexity, bits per token) on `config.data.eval_split`.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.losses import batch_loss, label_loss_sums
from jaxdl.tasks.base import Task as BaseTask


def uses_label_losses(model: nnx.Module) -> bool:
    return bool(getattr(model, "uses_label_losses", False))


class Task(BaseTask):
    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        if not uses_label_losses(model):
            logits = model(batch["input"], train=True, rngs=rngs, **self.model_inputs(batch))
            loss, acc = batch_loss(logits, batch)
            return loss, {"accuracy": acc}
        if "label_b" in batch:
            raise ValueError(
                "mixup/CutMix batches (config.data.augment) need logits; this model trains through label_losses "
                "(e.g. config.model.head='sampled' or 'hierarchical')"
            )
        losses = model.label_losses(batch["input"], batch["label"], train=True, rngs=rngs, **self.model_inputs(batch))
        loss_sum, count = label_loss_sums(losses, batch["label"], batch.get("mask"))
        return loss_sum / jnp.maximum(count, 1.0), {}

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="perplexity")}
