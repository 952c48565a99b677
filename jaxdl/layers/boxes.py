"""Axis-aligned box operations in JAX: areas, IoU, generalized IoU (Rezatofighi et al. 2019), L1, and greedy
non-maximum suppression with a fixed output size (jit-able, so detection decoding stays inside the compiled
forward pass).

Boxes are (x1, y1, x2, y2) float arrays `[..., 4]` with x1 <= x2, y1 <= y2 (pixel-edge coordinates; a box's area
is (x2 - x1) * (y2 - y1), as in pycocotools and torchvision, no +1). Inside jit a bad box cannot raise: host code
checks boxes with `jaxdl.data.canvas.check_boxes` before they reach here.

NMS is written here rather than taken from a library: the kept options (torchvision.ops.nms, TF's
non_max_suppression) are torch / TensorFlow ops; this is the standard greedy rule over a score-sorted candidate
list, a `lax.fori_loop` over a precomputed IoU matrix, with padding so shapes stay static.
"""

import jax
import jax.numpy as jnp

_EPS = 1e-9


def area(boxes: jax.Array) -> jax.Array:
    """[..., 4] -> [...]: (x2 - x1) * (y2 - y1), clipped at 0."""
    return jnp.maximum(boxes[..., 2] - boxes[..., 0], 0) * jnp.maximum(boxes[..., 3] - boxes[..., 1], 0)


def _inter_union(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    lt = jnp.maximum(a[..., :2], b[..., :2])
    rb = jnp.minimum(a[..., 2:], b[..., 2:])
    wh = jnp.maximum(rb - lt, 0)
    inter = wh[..., 0] * wh[..., 1]
    return inter, area(a) + area(b) - inter


def iou(a: jax.Array, b: jax.Array) -> jax.Array:
    """Elementwise IoU of broadcastable `a`, `b` [..., 4] -> [...] (0 where the union is empty)."""
    inter, union = _inter_union(a, b)
    return jnp.where(union > 0, inter / jnp.maximum(union, _EPS), 0.0)


def giou(a: jax.Array, b: jax.Array) -> jax.Array:
    """Elementwise generalized IoU [..., 4] x [..., 4] -> [...] in [-1, 1]: IoU - |C \\ (A u B)| / |C| with C the
    smallest box enclosing both; unlike IoU it still has a gradient when the boxes do not overlap."""
    inter, union = _inter_union(a, b)
    iou_ = jnp.where(union > 0, inter / jnp.maximum(union, _EPS), 0.0)
    hull = area(jnp.concatenate([jnp.minimum(a[..., :2], b[..., :2]), jnp.maximum(a[..., 2:], b[..., 2:])], -1))
    return iou_ - jnp.where(hull > 0, (hull - union) / jnp.maximum(hull, _EPS), 0.0)


def pairwise_iou(a: jax.Array, b: jax.Array) -> jax.Array:
    """[..., n, 4] x [..., m, 4] -> [..., n, m]."""
    return iou(a[..., :, None, :], b[..., None, :, :])


def pairwise_giou(a: jax.Array, b: jax.Array) -> jax.Array:
    """[..., n, 4] x [..., m, 4] -> [..., n, m]."""
    return giou(a[..., :, None, :], b[..., None, :, :])


def giou_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """1 - GIoU, elementwise [..., 4] x [..., 4] -> [...] in [0, 2]."""
    return 1.0 - giou(pred, target)


def l1(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Sum over the 4 coordinates of |pred - target|: [..., 4] -> [...]."""
    return jnp.abs(pred - target).sum(-1)


def nms(boxes: jax.Array, scores: jax.Array, iou_threshold: float, max_outputs: int) -> jax.Array:
    """Greedy NMS of one image: boxes [n, 4], scores [n] -> int32 [max_outputs] indices into `boxes` of the kept
    boxes in decreasing score, -1 padded. A box is kept unless a kept box of higher score (ties: lower index)
    has IoU > `iou_threshold` with it. Entries with score = -inf are never kept (padding)."""
    n = boxes.shape[0]
    order = jnp.argsort(-scores, stable=True)
    sorted_boxes, valid = boxes[order], jnp.isfinite(scores[order])
    overlap = pairwise_iou(sorted_boxes, sorted_boxes) > iou_threshold
    later = jnp.arange(n)[None, :] > jnp.arange(n)[:, None]

    def body(i, keep):
        return keep & ~(keep[i] & overlap[i] & later[i])

    keep = jax.lax.fori_loop(0, n, body, valid)
    rank = jnp.where(keep, jnp.arange(n), n)  # kept entries in score order, the rest pushed to the end
    first = (
        jnp.sort(rank)[:max_outputs]
        if max_outputs <= n
        else jnp.pad(jnp.sort(rank), (0, max_outputs - n), constant_values=n)
    )
    return jnp.where(first < n, order[jnp.minimum(first, n - 1)], -1).astype(jnp.int32)


def batched_nms(
    boxes: jax.Array, scores: jax.Array, classes: jax.Array, iou_threshold: float, max_outputs: int
) -> jax.Array:
    """Class-aware NMS of one image (boxes of different classes never suppress each other): boxes [n, 4], scores
    [n], classes int [n] -> int32 [max_outputs] indices (-1 padded). Offsets each class's boxes by a distinct
    translation larger than every box extent, then runs `nms` once (torchvision's batched_nms trick)."""
    span = jnp.max(jnp.where(jnp.isfinite(boxes), jnp.abs(boxes), 0)) + 1.0
    shifted = boxes + (classes.astype(boxes.dtype) * 2 * span)[:, None]
    return nms(shifted, scores, iou_threshold, max_outputs)
