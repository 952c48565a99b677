"""Box ops (jaxdl.layers.boxes): IoU / GIoU against hand-computed cases, NMS against a brute-force greedy
reference written from the definition, bad boxes rejected by name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.data.canvas import check_boxes
from jaxdl.layers import boxes as B

# (a, b, IoU, GIoU) worked out by hand
CASES = [
    ((0, 0, 2, 2), (0, 0, 2, 2), 1.0, 1.0),  # identical
    ((0, 0, 2, 2), (1, 0, 3, 2), 2 / 6, 2 / 6),  # half overlap: inter 2, union 6, hull 6
    ((0, 0, 4, 4), (1, 1, 2, 2), 1 / 16, 1 / 16),  # contained
    ((0, 0, 1, 1), (2, 0, 3, 1), 0.0, -1 / 3),  # disjoint: union 2, hull 3
    ((0, 0, 1, 1), (2, 2, 3, 3), 0.0, 0 - 7 / 9),  # diagonal: union 2, hull 9
    ((0, 0, 2, 1), (1, 0, 3, 1), 1 / 3, 1 / 3),  # touching rows, inter 1
    ((0, 0, 1, 1), (1, 0, 2, 1), 0.0, 0.0),  # edge-adjacent: hull = union
]


def test_iou_giou_hand_cases():
    a = jnp.array([c[0] for c in CASES], jnp.float32)
    b = jnp.array([c[1] for c in CASES], jnp.float32)
    np.testing.assert_allclose(B.iou(a, b), [c[2] for c in CASES], atol=1e-6)
    np.testing.assert_allclose(B.giou(a, b), [c[3] for c in CASES], atol=1e-6)
    np.testing.assert_allclose(B.iou(b, a), [c[2] for c in CASES], atol=1e-6)  # symmetric
    np.testing.assert_allclose(B.giou_loss(a, b), [1 - c[3] for c in CASES], atol=1e-6)
    np.testing.assert_allclose(B.l1(a, b), np.abs(np.array([c[0] for c in CASES]) - [c[1] for c in CASES]).sum(1))
    pair = B.pairwise_iou(a, b)
    assert pair.shape == (len(CASES), len(CASES))
    np.testing.assert_allclose(jnp.diagonal(pair), [c[2] for c in CASES], atol=1e-6)
    np.testing.assert_allclose(jnp.diagonal(B.pairwise_giou(a, b)), [c[3] for c in CASES], atol=1e-6)


def test_giou_has_a_gradient_where_iou_has_none():
    target = jnp.array([2.0, 0.0, 3.0, 1.0])
    g = jax.grad(lambda p: B.giou_loss(p, target))(jnp.array([0.0, 0.0, 1.0, 1.0]))
    assert float(jnp.abs(g).sum()) > 0  # disjoint boxes: GIoU pulls the box towards the target
    assert float(g[2]) < 0  # moving x2 right lowers the loss
    assert float(jnp.abs(jax.grad(lambda p: B.iou(p, target))(jnp.array([0.0, 0.0, 1.0, 1.0]))).sum()) == 0


def _np_iou(a, b):
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = np.prod(np.clip(rb - lt, 0, None))
    union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
    return inter / union if union > 0 else 0.0


def brute_nms(boxes, scores, thr):
    """Greedy NMS from its definition: repeatedly keep the best remaining box, drop every box overlapping it."""
    remaining = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    kept = []
    while remaining:
        best = remaining.pop(0)
        kept.append(best)
        remaining = [i for i in remaining if _np_iou(boxes[best], boxes[i]) <= thr]
    return kept


def _random_boxes(rng, n):
    centres = rng.uniform(0, 40, (4, 2))[rng.integers(0, 4, n)] + rng.normal(0, 4, (n, 2))  # clustered: overlaps
    wh = rng.uniform(4, 20, (n, 2))
    return np.concatenate([centres - wh / 2, centres + wh / 2], 1).astype(np.float32)


@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_equals_brute_force(thr):
    rng = np.random.default_rng(int(thr * 10))
    nms = jax.jit(B.nms, static_argnums=(2, 3))
    for trial in range(6):
        n = int(rng.integers(5, 40))
        boxes = _random_boxes(rng, n)
        scores = rng.uniform(0, 1, n).astype(np.float32)
        if trial % 2:
            scores = np.round(scores * 4) / 4  # many ties: the lower index wins
        want = brute_nms(boxes, scores, thr)
        got = np.asarray(nms(jnp.asarray(boxes), jnp.asarray(scores), thr, 50))
        assert got[: len(want)].tolist() == want
        assert (got[len(want) :] == -1).all()
        short = np.asarray(nms(jnp.asarray(boxes), jnp.asarray(scores), thr, 3))
        assert short.tolist() == (want + [-1] * 3)[:3]


def test_nms_skips_padding_and_batched_nms_is_per_class():
    rng = np.random.default_rng(0)
    boxes = _random_boxes(rng, 30)
    scores = rng.uniform(0, 1, 30).astype(np.float32)
    scores[::5] = -np.inf  # padding entries are never kept
    classes = rng.integers(0, 3, 30)
    got = np.asarray(B.batched_nms(jnp.asarray(boxes), jnp.asarray(scores), jnp.asarray(classes), 0.4, 30))
    want = []
    for c in range(3):
        idx = np.flatnonzero((classes == c) & np.isfinite(scores))
        want += [int(idx[i]) for i in brute_nms(boxes[idx], scores[idx], 0.4)]
    want.sort(key=lambda i: (-scores[i], i))
    assert got[got >= 0].tolist() == want


def test_bad_boxes_fail_naming_the_row():
    check_boxes(np.array([[0, 0, 1, 1], [2, 2, 2, 5]]))  # zero width is a valid (degenerate) box
    with pytest.raises(ValueError, match=r"row 1 has x2 < x1"):
        check_boxes(np.array([[0, 0, 1, 1], [5, 0, 3, 1]]))
    with pytest.raises(ValueError, match=r"row 0 has y2 < y1"):
        check_boxes(np.array([[0, 4, 1, 1]]))
    with pytest.raises(ValueError, match="not finite"):
        check_boxes(np.array([[0, 0, np.nan, 1]]))
    with pytest.raises(ValueError, match="outside the 64x64 canvas"):
        check_boxes(np.array([[0, 0, 65, 1]]), size=64)
