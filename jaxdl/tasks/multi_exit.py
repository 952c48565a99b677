"""Multi-exit training (BranchyNet, Teerapittayanon et al. 2016): every exit of a model with an `exits(x)` method
(`jaxdl.models.vision.multi_exit`) is trained at once on the weighted sum of the exits' cross-entropies,

    loss = Σ_k w_k CE(logits_k, label),    config.task = dict(name="multi_exit", weights=(1.0, 1.0, 1.0))

(`weights` empty: 1 for every exit, BranchyNet's default). Each exit's CE is `jaxdl.losses.batch_loss` (so
mixup/CutMix, ignored labels and padding masks work as in `classify`). Metrics: loss, accuracy (the last exit),
`exit<k>_accuracy` and `exit<k>_loss`. The model's `__call__` is its last exit, so the default evaluator scores it.
"""

import jax
from flax import nnx

from jaxdl.losses import batch_loss
from jaxdl.tasks.base import Task as BaseTask


class Task(BaseTask):
    def __init__(self, *, weights: tuple = ()):
        super().__init__()
        self.weights = tuple(float(w) for w in weights)
        if any(w < 0 for w in self.weights) or (self.weights and sum(self.weights) <= 0):
            raise ValueError(f"config.task.weights={weights}: need non-negative weights with a positive sum")

    def build(self, model_config, *, input_shape, num_classes, rngs, label_counts=None):
        model = super().build(model_config, input_shape=input_shape, num_classes=num_classes, rngs=rngs)
        if not callable(getattr(model, "exits", None)):
            raise ValueError(f"config.model.name={model_config['name']!r} has no exits(x) method (use multi_exit)")
        if self.weights and len(self.weights) != model.num_exits:
            raise ValueError(f"config.task.weights has {len(self.weights)} entries for {model.num_exits} exits")
        return model

    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        exits = model.exits(batch["input"], train=True, rngs=rngs, **self.model_inputs(batch))
        weights = self.weights or (1.0,) * len(exits)
        total, metrics = 0.0, {}
        for k, (w, logits) in enumerate(zip(weights, exits, strict=True)):
            loss, acc = batch_loss(logits, batch)
            total = total + w * loss
            metrics[f"exit{k}_loss"], metrics[f"exit{k}_accuracy"] = loss, acc
        metrics["accuracy"] = metrics[f"exit{len(exits) - 1}_accuracy"]
        return total, metrics
