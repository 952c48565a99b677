"""Object detection with a dense anchor-free detector (e.g. `fcos`): batches hold "input" float [b, H, W, c],
"boxes" float32 [b, M, 4] (x1, y1, x2, y2 pixels) and "label" int [b, M] (class, -1 on padding).

The model returns dict(logits [b, L, C], ltrb [b, L, 4], boxes [b, L, 4], centerness [b, L]) and defines
`assign(boxes, label)` -> dict(index [b, L] (matched ground truth, -1 background), ltrb, centerness targets) and
`detect(x, ...)` (decoding, used by the `coco_map` evaluator).

Loss (sums over the batch divided by the number of positive locations, so it does not depend on the batch size):
- classification: sigmoid focal loss (optax, alpha 0.25, gamma 2) of every (location, class) against the one-hot
  class of its matched box;
- box: `giou_weight` x (1 - GIoU) of predicted vs matched boxes + `l1_weight` x L1 of the predicted distances vs
  the targets, both in units of the level's stride, over positives;
- centerness: binary cross-entropy against the FCOS centerness target, over positives.
Metrics: cls, giou, l1, centerness, positives (per image). Default evaluator: `coco_map`.

Set-prediction models (`model.set_prediction`, e.g. `detr`: logits [b, layers, Q, C + 1], boxes [b, layers, Q, 4]
for every decoder layer) are trained as DETR: each layer's queries are matched one-to-one to the ground truth by
minimum cost `class_weight` x (-p(class)) + `l1_weight` x L1(boxes / image size) + `giou_weight` x (-GIoU) (Hungarian
matching: `matcher="auction"` in JAX inside the step, or `"scipy"` on the host through a callback,
jaxdl.layers.matching); loss per layer = cross-entropy of every query (unmatched queries -> "no object",
weighted `eos_weight`) + `giou_weight` x (1 - GIoU) + `l1_weight` x L1 of matched boxes (normalized by the image
size) divided by the number of objects; summed over layers (the last + auxiliary decoding losses). DETR's
weights: class 1, L1 5, GIoU 2, eos 0.1 (set `l1_weight=5, giou_weight=2` in the config). Metrics (last layer):
cls, l1, giou, aux (the other layers' summed loss), unassigned (fraction of objects the matcher left without a
query; 0 unless the auction hit its iteration bound).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdl.layers import boxes as box_ops
from jaxdl.layers import matching
from jaxdl.tasks.base import Task as BaseTask


class Task(BaseTask):
    batch_keys = ("input", "label", "boxes")
    not_model_inputs = ("input", "label", "boxes", "image_id", "mask")

    def __init__(
        self,
        giou_weight: float = 1.0,
        l1_weight: float = 0.25,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        class_weight: float = 1.0,
        eos_weight: float = 0.1,
        matcher: str = "auction",
    ):
        for key, value in (
            ("giou_weight", giou_weight),
            ("l1_weight", l1_weight),
            ("focal_gamma", focal_gamma),
            ("class_weight", class_weight),
            ("eos_weight", eos_weight),
        ):
            if value < 0:
                raise ValueError(f"config.task.{key}={value} must be >= 0")
        if not 0 <= focal_alpha <= 1:
            raise ValueError(f"config.task.focal_alpha={focal_alpha} must be in [0, 1]")
        if matcher not in ("auction", "scipy"):
            raise ValueError(f"config.task.matcher={matcher!r} is not one of 'auction', 'scipy'")
        self.giou_weight, self.l1_weight = giou_weight, l1_weight
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.class_weight, self.eos_weight, self.matcher = class_weight, eos_weight, matcher

    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        out = model(batch["input"], train=True, rngs=rngs)
        return self.losses(model, out, batch)

    def losses(self, model: nnx.Module, out: dict, batch: dict) -> tuple[jax.Array, dict]:
        """(total, metrics) of model outputs `out` against the batch's boxes and labels (see the module doc)."""
        gt_boxes, gt_labels = batch["boxes"].astype(jnp.float32), batch["label"]
        if "mask" in batch:  # padding rows carry no objects
            gt_labels = jnp.where(batch["mask"][:, None] > 0, gt_labels, -1)
        if getattr(model, "set_prediction", False):
            return self.set_losses(model, out, gt_boxes, gt_labels)
        t = model.assign(gt_boxes, gt_labels)
        index = t["index"]
        pos = index >= 0
        npos = jnp.maximum(pos.sum(), 1).astype(jnp.float32)
        k = jnp.maximum(index, 0)
        matched_label = jnp.take_along_axis(gt_labels, k, axis=1)
        matched_box = jnp.take_along_axis(gt_boxes, k[..., None], axis=1)
        logits = out["logits"]
        onehot = jax.nn.one_hot(jnp.where(pos, matched_label, -1), logits.shape[-1])
        cls = optax.sigmoid_focal_loss(logits, onehot, alpha=self.focal_alpha, gamma=self.focal_gamma).sum() / npos
        giou = jnp.where(pos, box_ops.giou_loss(out["boxes"], matched_box), 0.0).sum() / npos
        l1 = jnp.where(pos, box_ops.l1(out["ltrb"], t["ltrb"]), 0.0).sum() / npos
        ctr = jnp.where(pos, optax.sigmoid_binary_cross_entropy(out["centerness"], t["centerness"]), 0.0).sum() / npos
        total = cls + self.giou_weight * giou + self.l1_weight * l1 + ctr
        metrics = {"cls": cls, "giou": giou, "l1": l1, "centerness": ctr, "positives": pos.sum() / pos.shape[0]}
        return total, metrics

    # ------------------------------------------------------------------------------------ set prediction
    def match(self, cost: jax.Array) -> jax.Array:
        """cost [..., M, Q] -> int32 [..., M]: each ground truth's query (minimum total cost, distinct queries)."""
        flat = jax.lax.stop_gradient(cost.reshape(-1, *cost.shape[-2:]))
        if self.matcher == "auction":
            cols = jax.vmap(lambda c: matching.auction(c, eps=1e-4, max_iters=20_000))(flat)
        else:

            def host(c):
                return np.stack([matching.hungarian(x) for x in np.asarray(c)]).astype(np.int32)

            cols = jax.pure_callback(host, jax.ShapeDtypeStruct(flat.shape[:2], jnp.int32), flat)
        return cols.reshape(cost.shape[:-1])

    def set_losses(self, model, out: dict, gt_boxes: jax.Array, gt_labels: jax.Array) -> tuple[jax.Array, dict]:
        """DETR loss of every decoder layer (see the module docstring); metrics of the last layer."""
        logits, boxes = out["logits"], out["boxes"]  # [b, D, Q, C+1], [b, D, Q, 4]
        b, layers, q, c1 = logits.shape
        m = gt_labels.shape[1]
        h, w = model.size
        scale = jnp.array([w, h, w, h], jnp.float32)
        real = gt_labels >= 0  # [b, M]
        nobj = jnp.maximum(real.sum(), 1).astype(jnp.float32)
        lab = jnp.maximum(gt_labels, 0)
        prob = jax.nn.softmax(jax.lax.stop_gradient(logits), -1)  # [b, D, Q, C+1]
        p_gt = jnp.take_along_axis(prob, jnp.broadcast_to(lab[:, None, None, :], (b, layers, q, m)), -1)  # [b,D,Q,M]
        pb, gb = jax.lax.stop_gradient(boxes) / scale, gt_boxes / scale
        l1 = jnp.abs(gb[:, None, :, None, :] - pb[:, :, None, :, :]).sum(-1)  # [b, D, M, Q]
        giou = box_ops.giou(gb[:, None, :, None, :], pb[:, :, None, :, :])
        cost = -self.class_weight * jnp.swapaxes(p_gt, -1, -2) + self.l1_weight * l1 - self.giou_weight * giou
        cost = jnp.where(real[:, None, :, None], cost, 0.0)  # padding rows: indifferent, never counted
        cols = self.match(cost)  # [b, D, M]
        bi, di, _ = jnp.meshgrid(jnp.arange(b), jnp.arange(layers), jnp.arange(m), indexing="ij")
        target = jnp.full((b, layers, q), c1 - 1, jnp.int32)  # "no object"
        target = target.at[bi, di, jnp.where(real[:, None, :], cols, q)].set(
            jnp.broadcast_to(lab[:, None, :], cols.shape), mode="drop"
        )
        weight = jnp.where(target == c1 - 1, self.eos_weight, 1.0)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, target)
        cls = (ce * weight).sum((0, 2)) / weight.sum((0, 2))  # [D]
        mb = jnp.take_along_axis(boxes, cols[..., None], 2) / scale  # matched predictions [b, D, M, 4]
        mask = real[:, None, :]
        l1_loss = jnp.where(mask, box_ops.l1(mb, gb[:, None]), 0.0).sum((0, 2)) / nobj
        giou_loss = jnp.where(mask, box_ops.giou_loss(mb, gb[:, None]), 0.0).sum((0, 2)) / nobj
        per_layer = self.class_weight * cls + self.l1_weight * l1_loss + self.giou_weight * giou_loss
        # objects the matcher left without a query (the auction's max_iters reached): must stay 0
        unassigned = ((cols < 0) & mask).sum() / nobj
        metrics = {"cls": cls[-1], "l1": l1_loss[-1], "giou": giou_loss[-1], "aux": per_layer[:-1].sum()}
        metrics |= {"unassigned": unassigned}
        return per_layer.sum(), metrics

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="coco_map")}
