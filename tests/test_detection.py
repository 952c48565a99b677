"""Detection: our numpy COCO mAP equals pycocotools on a fixture built to stress COCOeval's rules, the FCOS
targets follow their rules, and a short FCOS training run beats trivial baselines on its loss terms."""

import os

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from offline_data import require_fashion_mnist

from jaxdl import models, tasks
from jaxdl.data import canvas, fashion_mnist
from jaxdl.evaluators import coco_map


def _fixture_gt(rng, n_images=25, n_cats=4):
    images, anns = [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "width": 64, "height": 64})
        for _ in range(rng.integers(0, 5)):  # some images have no objects at all
            x, y = rng.uniform(0, 40, 2)
            w, h = rng.uniform(3, 24, 2)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": int(rng.integers(1, n_cats + 1)),
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": 0,
                }
            )
    cats = [{"id": c, "name": f"c{c}"} for c in range(1, n_cats + 2)]  # the last category has no ground truth
    return {"images": images, "annotations": anns, "categories": cats}


def _fixture_detections(rng, gt):
    dets = []
    for a in gt["annotations"]:
        for _ in range(rng.integers(0, 3)):  # misses, hits and duplicates
            jitter = rng.normal(0, rng.choice([0.5, 2.0, 5.0]), 4)
            box = np.maximum(np.array(a["bbox"]) + jitter, [0, 0, 0.5, 0.5])
            cat = a["category_id"] if rng.uniform() < 0.85 else int(rng.integers(1, 6))  # some wrong classes
            dets.append({"image_id": a["image_id"], "category_id": cat, "bbox": box.tolist(), "score": 0.0})
    for _ in range(40):  # false positives, also on images without objects and in the empty category
        x, y, w, h = rng.uniform(0, 40), rng.uniform(0, 40), rng.uniform(2, 20), rng.uniform(2, 20)
        dets.append(
            {
                "image_id": int(rng.integers(1, len(gt["images"]) + 1)),
                "category_id": int(rng.integers(1, 6)),
                "bbox": [x, y, w, h],
                "score": 0.0,
            }
        )
    scores = np.round(rng.uniform(0, 1, len(dets)), 1)  # coarse scores: many ties across and within images
    for d, s in zip(dets, scores, strict=True):
        d["score"] = float(s)
    return [dets[i] for i in rng.permutation(len(dets))]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_own_map_equals_pycocotools(seed):
    rng = np.random.default_rng(seed)
    gt = _fixture_gt(rng)
    dets = _fixture_detections(rng, gt)
    ours = coco_map.coco_metrics(gt, dets)
    ref = coco_map.pycocotools_metrics(gt, dets)
    assert 0.05 < ref["map"] < 0.95  # a fixture where the metric is not trivially 0 or 1
    for key in ("map", "ap50", "ap75", "ar100"):
        assert abs(ours[key] - ref[key]) <= 1e-6, (key, ours[key], ref[key])


def test_own_map_max_detections_and_perfect_predictions():
    rng = np.random.default_rng(5)
    gt = _fixture_gt(rng, n_images=8)
    perfect = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
        for a in gt["annotations"]
    ]
    for m in (coco_map.coco_metrics(gt, perfect), coco_map.pycocotools_metrics(gt, perfect)):
        assert m["map"] == pytest.approx(1.0) and m["ar100"] == pytest.approx(1.0)
    # more than 100 detections on one image: both cut per (image, category) to the 100 best
    many = perfect + [
        {"image_id": 1, "category_id": 1, "bbox": [float(i % 50), 1.0, 3.0, 3.0], "score": 0.95} for i in range(150)
    ]
    ours, ref = coco_map.coco_metrics(gt, many), coco_map.pycocotools_metrics(gt, many)
    for key in ours:
        assert abs(ours[key] - ref[key]) <= 1e-6, key


def test_to_results_converts_boxes_and_drops_padding():
    out = coco_map.to_results(
        [7], np.array([[[1.0, 2.0, 5.0, 10.0], [0, 0, 0, 0]]]), np.array([[0.5, 0.0]]), np.array([[3, -1]])
    )
    assert out == [{"image_id": 7, "category_id": 4, "bbox": [1.0, 2.0, 4.0, 8.0], "score": 0.5}]


def _model(rngs_seed=0, **kw):
    cfg = dict(name="fcos", width=8, features=16, **kw)
    with nnx.use_eager_sharding(False):  # no mesh here: plain single-device arrays
        return models.make(cfg, input_shape=(64, 64, 1), num_classes=10, rngs=nnx.Rngs(rngs_seed))


def test_fcos_assignment_rules():
    model = nnx.eval_shape(_model)  # assign() reads only the geometry: no parameters needed
    boxes = jnp.array([[[8.0, 8.0, 28.0, 28.0], [0.0, 0.0, 64.0, 64.0], [29.0, 29.0, 35.0, 35.0], [0, 0, 0, 0]]])
    labels = jnp.array([[3, 5, 1, -1]])
    t = model.assign(boxes, labels)
    from jaxdl.models.vision.fcos import locations

    points, stride, ranges = locations(64, 64)
    index = np.asarray(t["index"][0])
    boxes, ltrb = np.asarray(boxes), np.asarray(t["ltrb"][0])
    for loc in np.flatnonzero(index >= 0):  # every positive satisfies the rules for its box
        x1, y1, x2, y2 = boxes[0, index[loc]]
        px, py = points[loc]
        d = np.array([px - x1, py - y1, x2 - px, y2 - py])
        assert d.min() > 0 and ranges[loc, 0] <= d.max() <= ranges[loc, 1]
        assert max(abs(px - (x1 + x2) / 2), abs(py - (y1 + y2) / 2)) < 1.5 * stride[loc]
        np.testing.assert_allclose(ltrb[loc], d / stride[loc], rtol=1e-6)
    assert 3 not in index  # padding never matched
    # the small box in the middle of the big one wins its locations (smallest area)
    assert (index == 2).any() and (index == 0).any() and (index == 1).any()
    # brute force: each location's match is the smallest valid box
    for loc in range(len(points)):
        valid = []
        for g in range(3):
            x1, y1, x2, y2 = boxes[0, g]
            px, py = points[loc]
            d = np.array([px - x1, py - y1, x2 - px, y2 - py])
            near = max(abs(px - (x1 + x2) / 2), abs(py - (y1 + y2) / 2)) < 1.5 * stride[loc]
            if d.min() > 0 and near and ranges[loc, 0] <= d.max() <= ranges[loc, 1]:
                valid.append(((x2 - x1) * (y2 - y1), g))
        assert index[loc] == (min(valid)[1] if valid else -1)


def _canvases(n):
    folder = fashion_mnist.raw_dir()
    images = fashion_mnist.read_idx(os.path.join(folder, fashion_mnist.FILES["train"][0]))[:2000]
    labels = fashion_mnist.read_idx(os.path.join(folder, fashion_mnist.FILES["train"][1]))[:2000]
    raw = [e for _, e in canvas.make_split(images, labels, n, seed=9)]
    stacked = {k: np.stack([e[k] for e in raw]) for k in raw[0]}
    return {k: jnp.asarray(v) for k, v in canvas.preprocess(stacked).items()}


def test_short_fcos_run_beats_trivial_baselines():
    """40 Adam steps on 32 canvases: the loss drops well below its value at init (the 1 % prior classifier), and
    the GIoU of the predicted boxes on positive locations beats a trivial box predictor (a box of the mean
    ground-truth size centred on each location)."""
    require_fashion_mnist()
    batch = _canvases(32)
    task = tasks.make({"name": "detect"})
    model = _model()
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, batch):
        (loss, metrics), grads = nnx.value_and_grad(lambda m: task.loss(m, batch, nnx.Rngs(0)), has_aux=True)(model)
        opt.update(model, grads)
        return loss, metrics

    @nnx.jit
    def evaluate(model, batch):
        return task.losses(model, model(batch["input"], train=False), batch)

    loss0, _ = evaluate(model, batch)
    for _ in range(40):
        step(model, opt, batch)
    loss1, m1 = evaluate(model, batch)
    assert float(loss1) < 0.6 * float(loss0), (float(loss0), float(loss1))

    # trivial boxes: the mean ground-truth width/height centred on every positive location
    t = model.assign(batch["boxes"], batch["label"])
    from jaxdl.layers import boxes as box_ops
    from jaxdl.models.vision.fcos import locations

    points, _, _ = locations(64, 64)
    real = np.asarray(batch["label"]) >= 0
    gtb = np.asarray(batch["boxes"])[real]
    wh = (gtb[:, 2:] - gtb[:, :2]).mean(0)
    trivial = jnp.concatenate([points - wh / 2, points + wh / 2], -1)[None].repeat(32, 0)
    pos = t["index"] >= 0
    matched = jnp.take_along_axis(batch["boxes"], jnp.maximum(t["index"], 0)[..., None], axis=1)
    trivial_giou = float(jnp.where(pos, box_ops.giou_loss(trivial, matched), 0).sum() / pos.sum())
    assert float(m1["giou"]) < trivial_giou - 0.05, (float(m1["giou"]), trivial_giou)


def test_detect_decodes_sorted_padded_detections():
    require_fashion_mnist()
    batch = _canvases(4)
    model = _model()
    out = nnx.jit(lambda m, x: m.detect(x, score_threshold=0.0, iou_threshold=0.5, max_detections=20))(
        model, batch["input"]
    )
    assert out["boxes"].shape == (4, 20, 4) and out["classes"].dtype == jnp.int32
    s = np.asarray(out["scores"])
    assert (np.diff(s, axis=1) <= 0).all()  # sorted by decreasing score
    b = np.asarray(out["boxes"])
    assert (b >= 0).all() and (b <= 64).all() and (b[..., 2] >= b[..., 0]).all()
    # kept boxes of one class never overlap above the NMS threshold
    from jaxdl.layers.boxes import pairwise_iou

    for i in range(4):
        c = np.asarray(out["classes"][i])
        iou = np.asarray(pairwise_iou(out["boxes"][i], out["boxes"][i]))
        same = (c[:, None] == c[None, :]) & (c[:, None] >= 0) & ~np.eye(20, dtype=bool)
        assert (iou[same] <= 0.5 + 1e-6).all()


def test_bad_detector_config_fails_by_name():
    with pytest.raises(ValueError, match="multiples of 16"):
        models.make(dict(name="fcos"), input_shape=(60, 60, 1), num_classes=10, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="config.task.giou_weight"):
        tasks.make({"name": "detect", "giou_weight": -1.0})
