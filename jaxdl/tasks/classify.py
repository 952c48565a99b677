"""Classification by softmax cross-entropy: `[batch, classes]` logits for images/vectors, `[batch, seq, classes]`
for per-token labels. Mixup/CutMix batches (`label_b`, `mix` from `config.data.augment`) take the λ-mixed loss;
labels < 0 and rows with mask 0 are ignored (`jaxdl.losses`). Metrics: loss, accuracy (argmax vs `label`)."""

import jax
from flax import nnx

from jaxdl.losses import batch_loss
from jaxdl.tasks.base import Task as BaseTask


class Task(BaseTask):
    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        if getattr(model, "uses_label_losses", False):
            raise ValueError(
                f"model {type(model).__module__} trains through label_losses (config.model.head='sampled' or "
                "'hierarchical'): use config.task.name='lm'"
            )
        logits = model(batch["input"], train=True, rngs=rngs, **self.model_inputs(batch))
        loss, acc = batch_loss(logits, batch)
        return loss, {"accuracy": acc}
