"""Semantic segmentation: "input" float [b, H, W, c], "label" int [b, H, W] (0 = background, c + 1 = dataset class
c, e.g. jaxdl.data.canvas `canvas_seg`; labels < 0 are ignored). The model (e.g. `seg_unet`) is built with the
dataset's num_classes + 1 outputs (the background) and maps inputs to per-pixel logits [b, H, W, classes].

Loss: per-pixel cross-entropy, mean over counted pixels (jaxdl.losses; padding rows excluded). Metrics: loss,
pixel accuracy. Default evaluator: `miou` (mean and per-class IoU over the split).
"""

import jax
from flax import nnx

from jaxdl.losses import batch_loss
from jaxdl.tasks.base import Task as BaseTask


class Task(BaseTask):
    def build(self, model_config, *, input_shape, num_classes, rngs, label_counts=None) -> nnx.Module:
        """The model with num_classes + 1 outputs: index 0 is the background."""
        return super().build(
            model_config, input_shape=input_shape, num_classes=num_classes + 1, rngs=rngs, label_counts=label_counts
        )

    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        logits = model(batch["input"], train=True, rngs=rngs)
        loss, acc = batch_loss(logits, batch)
        return loss, {"accuracy": acc}

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="miou")}
