"""Semantic segmentation quality: per-class IoU = TP / (TP + FP + FN) over every pixel of the split (one confusion
matrix accumulated over all images, as in PASCAL VOC / Cityscapes), mIoU = the mean over classes that occur in
the ground truth or the predictions (background included; `miou_objects` excludes class 0), and pixel accuracy.

The model maps inputs to per-pixel logits [b, H, W, classes]; labels are int [b, H, W] (< 0 ignored). Class
names come from the dataset's label feature when it has them (`iou/<name>`, background = `iou/background`), else
`iou/<index>`.
"""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator


def confusion(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [num_classes, num_classes]: counts of (true, predicted) over pixels with label >= 0."""
    labels, pred = np.asarray(labels).ravel(), np.asarray(pred).ravel()
    keep = labels >= 0
    return np.bincount(labels[keep] * num_classes + pred[keep], minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def iou_from_confusion(cm: np.ndarray) -> np.ndarray:
    """float64 [classes] IoU per class (NaN where the class is absent from both truth and prediction)."""
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / denom, np.nan)


class Evaluator(BaseEvaluator):
    """Options: `batch_size` (default `config.data.eval_batch_size`)."""

    def __init__(self, ctx: Context, *, batch_size: int = 0, **common):
        super().__init__(ctx, **common)
        self.batch_size = batch_size or ctx.config.data.eval_batch_size
        graphdef = ctx.graphdef

        def predict(params, rest, batch):
            from flax import nnx

            with ctx.trace_context():
                model = nnx.merge(graphdef, params, rest)
                return model(batch["input"], train=False).argmax(-1)

        self._predict = jax.jit(
            predict,
            in_shardings=(ctx.param_sharding, ctx.rest_sharding, ctx.batch_sharding),
            out_shardings=NamedSharding(ctx.mesh, PartitionSpec()),
        )

    def names(self, num_classes: int) -> list[str]:
        from jaxdl import data

        d = self.ctx.config.data
        feature = data.builder(d.name, d.data_dir or None).info.features[self.ctx.ds_info["label_key"]]
        names = getattr(getattr(feature, "feature", feature), "names", None)
        if names and len(names) + 1 == num_classes:
            return ["background", *names]
        return [str(i) for i in range(num_classes)]

    def run(self, params, rest) -> dict[str, float]:
        cm = None
        for batch in self.ctx.batches(self.split, self.batch_size):
            pred = np.asarray(jax.device_get(self._predict(params, rest, batch)))
            labels = np.asarray(jax.device_get(batch["label"])).copy()
            labels[np.asarray(jax.device_get(batch["mask"])) <= 0] = -1  # padding rows
            if cm is None:
                cm = np.zeros((self.num_classes(pred, labels),) * 2, np.int64)
            cm += confusion(labels, pred, len(cm))
        iou = iou_from_confusion(cm)
        out = {
            "miou": float(np.nanmean(iou)),
            "miou_objects": float(np.nanmean(iou[1:])),
            "pixel_accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
        }
        for name, v in zip(self.names(len(cm)), iou, strict=True):
            out[f"iou/{name}"] = float(v)
        return out

    def num_classes(self, pred: np.ndarray, labels: np.ndarray) -> int:
        """The model's output classes: the dataset's num_classes + 1 (background) for the `segment` task."""
        n = int(self.ctx.ds_info["num_classes"]) + 1
        if pred.max(initial=0) >= n or labels.max(initial=0) >= n:
            raise ValueError(f"evaluator miou: class ids reach {max(pred.max(), labels.max())} >= {n} classes")
        return n
