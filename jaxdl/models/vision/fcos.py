"""FCOS (Tian et al. 2019): an anchor-free single-stage detector. Every feature-pyramid location predicts class
scores, its distances to the four sides of a box (l, t, r, b) and a centerness; decoding keeps the top-scoring
(location, class) pairs and removes duplicates with class-aware NMS (jaxdl.layers.boxes).

[b, H, W, c] -> _pyramid.Backbone (strides 2..16) -> FPN on the stride 4, 8, 16 levels (`features` channels) ->
one head shared by the levels: `head_convs` x (3x3 conv, GroupNorm, ReLU) towers for classification and box,
class logits (bias at the 1 % prior, Lin et al. 2017), distances = softplus(scale_level x raw) x stride, and a
centerness logit from the box tower. Locations: the centres (stride / 2 + stride x i) of every level, flattened
level by level into L = sum (H / s) (W / s) points.

Training targets (`assign`, FCOS rules): a location is a positive of ground-truth box g if it lies inside g and
within `radius` x stride of g's centre (centre sampling), and max(l, t, r, b) falls in its level's range
(`ranges`: 0-16, 16-32, 32-inf pixels at strides 4, 8, 16); among several candidates the smallest box wins.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.layers import boxes as box_ops
from jaxdl.layers.conv import conv2d
from jaxdl.layers.norm import apply_norm, make_norm
from jaxdl.models.vision._pyramid import FPN, Backbone, check_input_shape

STRIDES = (4, 8, 16)
RANGES = ((0.0, 16.0), (16.0, 32.0), (32.0, np.inf))


@functools.cache
def locations(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points float32 [L, 2] (x, y) centres, stride float32 [L], range float32 [L, 2]) over STRIDES."""
    pts, strides, ranges = [], [], []
    for s, r in zip(STRIDES, RANGES, strict=True):
        ys, xs = np.meshgrid(np.arange(height // s), np.arange(width // s), indexing="ij")
        p = np.stack([xs.ravel(), ys.ravel()], -1) * s + s / 2
        pts.append(p)
        strides.append(np.full(len(p), s))
        ranges.append(np.tile(np.array(r), (len(p), 1)))
    return tuple(np.concatenate(a).astype(np.float32) for a in (pts, strides, ranges))


class Model(nnx.Module):
    """[batch, H, W, c] -> dict(logits float32 [b, L, classes], ltrb [b, L, 4] distances / stride, boxes [b, L, 4]
    (x1, y1, x2, y2 pixels), centerness [b, L] logits). `detect` decodes boxes; `assign` makes targets."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        width: int = 16,
        features: int = 48,
        head_convs: int = 1,
        norm: str = "group",
        groups: int = 8,
        radius: float = 1.5,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        check_input_shape("fcos", input_shape, STRIDES[-1])
        if radius <= 0:
            raise ValueError(f"config.model.radius={radius} must be > 0")
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.backbone = Backbone(input_shape[-1], width=width, norm=norm, groups=groups, **kw)
        self.fpn = FPN(self.backbone.channels[1:], features, **kw)

        def tower():
            layers = []
            for _ in range(head_convs):
                layers += [conv2d(features, features, 3, **kw), make_norm("group", features, groups=groups, **kw)]
            return nnx.List(layers)

        self.cls_tower, self.box_tower = tower(), tower()
        prior = nnx.initializers.constant(-float(np.log((1 - 0.01) / 0.01)))
        self.cls_out = conv2d(features, num_classes, 3, bias=True, bias_init=prior, **kw)
        self.box_out = conv2d(features, 4, 3, bias=True, **kw)
        self.ctr_out = conv2d(features, 1, 3, bias=True, **kw)
        self.scales = nnx.Param(jnp.ones((len(STRIDES),), jnp.float32))
        self.size, self.num_classes, self.radius = tuple(input_shape[:2]), num_classes, float(radius)

    @staticmethod
    def _run(tower, x):
        for i in range(0, len(tower), 2):
            x = nnx.relu(apply_norm(tower[i + 1], tower[i](x), True))
        return x

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> dict:
        del rngs  # no dropout
        levels = self.fpn(self.backbone(x, train)[1:])
        logits, dist, ctr = [], [], []
        b = x.shape[0]
        for i, f in enumerate(levels):
            c, r = self._run(self.cls_tower, f), self._run(self.box_tower, f)
            logits.append(self.cls_out(c).reshape(b, -1, self.num_classes))
            dist.append(jax.nn.softplus(self.scales[i] * self.box_out(r).astype(jnp.float32)).reshape(b, -1, 4))
            ctr.append(self.ctr_out(r).reshape(b, -1))
        points, stride, _ = locations(*self.size)
        ltrb = jnp.concatenate(dist, 1)
        d = ltrb * stride[:, None]
        boxes = jnp.concatenate([points - d[..., :2], points + d[..., 2:]], -1)
        return {
            "logits": jnp.concatenate(logits, 1).astype(jnp.float32),
            "ltrb": ltrb,
            "boxes": boxes,
            "centerness": jnp.concatenate(ctr, 1).astype(jnp.float32),
        }

    # ------------------------------------------------------------------------------------------- targets
    def assign(self, gt_boxes: jax.Array, gt_labels: jax.Array) -> dict:
        """Targets of gt_boxes float [b, M, 4] / gt_labels int [b, M] (-1 padding) -> dict(index int32 [b, L]
        (matched box, -1 background), ltrb [b, L, 4] target distances / stride, centerness [b, L] target)."""
        points, stride, ranges = (jnp.asarray(a) for a in locations(*self.size))
        p = points[None, :, None, :]  # [1, L, 1, 2]
        g = gt_boxes[:, None, :, :]  # [b, 1, M, 4]
        ltrb = jnp.concatenate([p - g[..., :2], g[..., 2:] - p], -1)  # [b, L, M, 4]
        inside = ltrb.min(-1) > 0
        centre = (g[..., :2] + g[..., 2:]) / 2
        near = (jnp.abs(p - centre) < self.radius * stride[None, :, None, None]).all(-1)
        m = ltrb.max(-1)
        in_range = (m >= ranges[None, :, None, 0]) & (m <= ranges[None, :, None, 1])
        ok = inside & near & in_range & (gt_labels[:, None, :] >= 0)
        cost = jnp.where(ok, box_ops.area(g), jnp.inf)
        index = jnp.where(ok.any(-1), jnp.argmin(cost, -1), -1).astype(jnp.int32)
        t = jnp.take_along_axis(ltrb, jnp.maximum(index, 0)[..., None, None], axis=2)[:, :, 0]  # [b, L, 4]
        lr, tb = t[..., 0::2], t[..., 1::2]
        ctr = jnp.sqrt(
            jnp.clip(lr.min(-1) / jnp.maximum(lr.max(-1), 1e-6), 0, 1)
            * jnp.clip(tb.min(-1) / jnp.maximum(tb.max(-1), 1e-6), 0, 1)
        )
        return {"index": index, "ltrb": t / stride[None, :, None], "centerness": jnp.where(index >= 0, ctr, 0.0)}

    # ------------------------------------------------------------------------------------------- decoding
    def detect(
        self,
        x: jax.Array,
        *,
        score_threshold: float = 0.05,
        iou_threshold: float = 0.6,
        max_detections: int = 100,
        pre_nms: int = 200,
    ) -> dict:
        """Decoded detections: boxes float32 [b, K, 4] (clipped to the image), scores [b, K] (0 on padding),
        classes int32 [b, K] (-1 on padding), K = max_detections, sorted by decreasing score. Score =
        sqrt(sigmoid(class logit) x sigmoid(centerness)); the `pre_nms` best (location, class) pairs above
        `score_threshold` go through class-aware NMS at `iou_threshold`."""
        out = self(x, train=False)
        scores = jnp.sqrt(jax.nn.sigmoid(out["logits"]) * jax.nn.sigmoid(out["centerness"])[..., None])
        h, w = self.size
        boxes = jnp.clip(out["boxes"], 0, jnp.array([w, h, w, h], jnp.float32))
        return jax.vmap(
            lambda b, s: decode(b, s, score_threshold, iou_threshold, max_detections, min(pre_nms, s.size))
        )(boxes, scores)


def decode(
    boxes: jax.Array, scores: jax.Array, score_threshold: float, iou_threshold: float, max_detections: int, pre_nms: int
) -> dict:
    """One image: boxes [L, 4], per-class scores [L, C] -> the top `max_detections` after class-aware NMS (see
    `Model.detect`)."""
    num_classes = scores.shape[-1]
    top, flat = jax.lax.top_k(scores.reshape(-1), pre_nms)
    loc, cls = flat // num_classes, flat % num_classes
    cand = boxes[loc]
    top = jnp.where(top > score_threshold, top, -jnp.inf)
    keep = box_ops.batched_nms(cand, top, cls, iou_threshold, max_detections)
    real = keep >= 0
    k = jnp.maximum(keep, 0)
    return {
        "boxes": jnp.where(real[:, None], cand[k], 0.0),
        "scores": jnp.where(real, top[k], 0.0),
        "classes": jnp.where(real, cls[k], -1).astype(jnp.int32),
    }
