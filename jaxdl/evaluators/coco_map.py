"""COCO box detection metrics of a detector's decoded predictions: mAP@[.5:.95], AP@.5, AP@.75 and AR@100
(area "all") from `pycocotools` (the reference), and the same numbers from `coco_metrics`, our own numpy
implementation of COCOeval's rules (kept beside it so the metric is readable and checkable: a test and every
evaluation report both; `map_numpy` must equal `map` to 1e-6). Also the inference throughput.

The model must define `detect(x, score_threshold=, iou_threshold=, max_detections=)` -> dict(boxes [b, K, 4]
(x1, y1, x2, y2), scores [b, K], classes int [b, K], -1 padding) (e.g. `fcos`), and the dataset an `image_id`
feature and COCO annotations (`jaxdl.data.canvas.coco_annotations`; category id = class + 1).

COCOeval rules reproduced by `coco_metrics` (pycocotools 2.0, cocoeval.py): per (image, category) detections
sorted by score (stable) and cut to the last maxDet; greedy matching at each IoU threshold in that order, each
detection taking the unmatched ground truth of highest IoU >= threshold (ties: the later one); per category all
images' detections sorted by score (stable, image order), precision made monotone, sampled at 101 recall points
(searchsorted, left), categories without ground truth excluded from the mean; recall = final recall per
(threshold, category). Crowd and area ranges are not modelled (the canvases have neither: iscrowd = 0, area
"all").
"""

import copy
import io
import time
from contextlib import redirect_stdout

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator

# exactly COCOeval's Params (the linspace arguments matter for bit-equal thresholds)
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_POINTS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)


def box_iou_xywh(d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """float64 [n, m] IoU of [x, y, w, h] boxes d [n, 4] and g [m, 4] (pycocotools' bbox IoU, no +1)."""
    d, g = np.asarray(d, np.float64).reshape(-1, 4), np.asarray(g, np.float64).reshape(-1, 4)
    x1 = np.maximum(d[:, None, 0], g[None, :, 0])
    y1 = np.maximum(d[:, None, 1], g[None, :, 1])
    x2 = np.minimum(d[:, None, 0] + d[:, None, 2], g[None, :, 0] + g[None, :, 2])
    y2 = np.minimum(d[:, None, 1] + d[:, None, 3], g[None, :, 1] + g[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = (d[:, 2] * d[:, 3])[:, None] + (g[:, 2] * g[:, 3])[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def coco_metrics(gt: dict, detections: list[dict], max_dets: int = 100) -> dict[str, float]:
    """Our numpy COCO bbox metrics: `gt` a COCO instances dict, `detections` a list of {image_id, category_id,
    bbox [x, y, w, h], score} -> {map, ap50, ap75, ar100} (-1 where undefined, as COCOeval)."""
    image_ids = sorted(im["id"] for im in gt["images"])
    cat_ids = sorted(c["id"] for c in gt["categories"])
    gts, dts = {}, {}
    for a in gt["annotations"]:
        gts.setdefault((a["image_id"], a["category_id"]), []).append(a["bbox"])
    for d in detections:
        dts.setdefault((d["image_id"], d["category_id"]), []).append((d["bbox"], d["score"]))
    t_count = len(IOU_THRESHOLDS)
    precision = -np.ones((t_count, len(RECALL_POINTS), len(cat_ids)))
    recall = -np.ones((t_count, len(cat_ids)))
    for k, c in enumerate(cat_ids):
        scores, matched, n_gt = [], [], 0
        for i in image_ids:
            g = np.array(gts.get((i, c), []), np.float64).reshape(-1, 4)
            dl = dts.get((i, c), [])
            if not len(g) and not dl:
                continue
            order = np.argsort([-s for _, s in dl], kind="mergesort")[:max_dets]
            d = np.array([dl[j][0] for j in order], np.float64).reshape(-1, 4)
            s = np.array([dl[j][1] for j in order], np.float64)
            ious = box_iou_xywh(d, g)
            m = np.zeros((t_count, len(d)), bool)
            for t, thr in enumerate(IOU_THRESHOLDS):
                taken = np.zeros(len(g), bool)
                for di in range(len(d)):
                    best, hit = min(thr, 1 - 1e-10), -1
                    for gi in range(len(g)):
                        if taken[gi] or ious[di, gi] < best:
                            continue
                        best, hit = ious[di, gi], gi
                    if hit >= 0:
                        taken[hit], m[t, di] = True, True
            scores.append(s)
            matched.append(m)
            n_gt += len(g)
        if not scores or n_gt == 0:
            continue
        s = np.concatenate(scores)
        order = np.argsort(-s, kind="mergesort")
        m = np.concatenate(matched, axis=1)[:, order]
        tp = np.cumsum(m, axis=1).astype(float)
        fp = np.cumsum(~m, axis=1).astype(float)
        for t in range(t_count):
            rc = tp[t] / n_gt
            pr = tp[t] / (fp[t] + tp[t] + np.spacing(1))
            recall[t, k] = rc[-1] if len(rc) else 0
            pr = np.maximum.accumulate(pr[::-1])[::-1] if len(pr) else pr
            q = np.zeros(len(RECALL_POINTS))
            idx = np.searchsorted(rc, RECALL_POINTS, side="left")
            ok = idx < len(pr)
            q[ok] = pr[idx[ok]]
            precision[t, :, k] = q

    def mean(x):
        x = x[x > -1]
        return float(np.mean(x)) if x.size else -1.0

    return {
        "map": mean(precision),
        "ap50": mean(precision[0]),
        "ap75": mean(precision[5]),
        "ar100": mean(recall),
    }


def pycocotools_metrics(gt: dict, detections: list[dict]) -> dict[str, float]:
    """The same four numbers from pycocotools' COCOeval (bbox, area all, maxDets 100)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not detections:  # loadRes cannot take an empty list; nothing detected = AP 0 and AR 0
        return {"map": 0.0, "ap50": 0.0, "ap75": 0.0, "ar100": 0.0}
    with redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(detections))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    st = ev.stats
    return {"map": float(st[0]), "ap50": float(st[1]), "ap75": float(st[2]), "ar100": float(st[8])}


def to_results(image_ids, boxes, scores, classes) -> list[dict]:
    """Decoded detections (image_ids [b], boxes [b, K, 4] x1y1x2y2, scores [b, K], classes [b, K], -1 padding)
    -> COCO result dicts (bbox [x, y, w, h], category_id = class + 1)."""
    out = []
    for i, bx, sc, cl in zip(image_ids, boxes, scores, classes, strict=True):
        for b, s, c in zip(bx, sc, cl, strict=True):
            if c < 0:
                continue
            x1, y1, x2, y2 = (float(v) for v in b)
            out.append(
                {"image_id": int(i), "category_id": int(c) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s)}
            )
    return out


class Evaluator(BaseEvaluator):
    """Options: `iou_threshold` (NMS), `score_threshold`, `max_detections`, `batch_size` (default
    `config.data.eval_batch_size`). Metrics: map, ap50, ap75, ar100 (pycocotools), map_numpy, ap50_numpy
    (coco_metrics), images_per_sec (forward + decoding + NMS throughput at `batch_size`, host transfer included,
    the compiling first batch excluded), detections (per image)."""

    def __init__(
        self,
        ctx: Context,
        *,
        iou_threshold: float = 0.6,
        score_threshold: float = 0.05,
        max_detections: int = 100,
        batch_size: int = 0,
        **common,
    ):
        super().__init__(ctx, **common)
        if not 0 < iou_threshold <= 1:
            raise ValueError(f"evaluator coco_map: iou_threshold={iou_threshold} must be in (0, 1]")
        if max_detections < 1:
            raise ValueError(f"evaluator coco_map: max_detections={max_detections} must be >= 1")
        self.batch_size = batch_size or ctx.config.data.eval_batch_size
        graphdef = ctx.graphdef
        opts = dict(score_threshold=score_threshold, iou_threshold=iou_threshold, max_detections=max_detections)

        def detect(params, rest, batch):
            from flax import nnx

            with ctx.trace_context():
                model = nnx.merge(graphdef, params, rest)
                if not hasattr(model, "detect"):
                    raise ValueError(f"evaluator coco_map: model {type(model).__module__} has no detect()")
                return model.detect(batch["input"], **opts)

        self._detect = jax.jit(
            detect,
            in_shardings=(ctx.param_sharding, ctx.rest_sharding, ctx.batch_sharding),
            out_shardings=NamedSharding(ctx.mesh, PartitionSpec()),
        )

    def ground_truth(self) -> dict:
        from jaxdl.data import canvas

        d = self.ctx.config.data
        return canvas.load_coco(canvas.coco_annotations(d.name, self.split, d.data_dir or None))

    def detections(self, params, rest) -> tuple[list[dict], float, int]:
        """(COCO result dicts of the split, seconds spent, images timed). The first batch (which compiles) is not
        timed unless it is the only one."""
        results, times = [], []
        for batch in self.ctx.batches(self.split, self.batch_size):
            start = time.perf_counter()
            out = jax.device_get(self._detect(params, rest, batch))
            elapsed = time.perf_counter() - start
            ids, real = np.asarray(jax.device_get(batch["image_id"])), np.asarray(jax.device_get(batch["mask"])) > 0
            results += to_results(ids[real], out["boxes"][real], out["scores"][real], out["classes"][real])
            times.append((elapsed, int(real.sum())))
        timed = times[1:] or times
        seconds, count = sum(t for t, _ in timed), sum(n for _, n in timed)
        return results, seconds, count

    def run(self, params, rest) -> dict[str, float]:
        gt = self.ground_truth()
        results, seconds, timed = self.detections(params, rest)
        images = len(gt["images"])
        ref = pycocotools_metrics(gt, results)
        ours = coco_metrics(gt, results)
        return {
            **ref,
            "map_numpy": ours["map"],
            "ap50_numpy": ours["ap50"],
            "images_per_sec": timed / max(seconds, 1e-9),
            "detections": len(results) / max(images, 1),
        }
