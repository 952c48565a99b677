"""The detection study's tables and figure from trained runs (train them first; README.md has the commands):

    python experiments/detection/study.py --det=/tmp/runs/det_fcos --detr=/tmp/runs/det_detr --seg=/tmp/runs/seg_unet \
        --detr2=/tmp/runs/det_detr2 --detr3=/tmp/runs/det_detr3 --skip_ablation

- results.json / results.csv: each run's final test metrics (from its metrics.jsonl: COCO mAP@[.5:.95], AP50,
  AP75, AR@100 by pycocotools, our numpy mAP beside it; mIoU and per-class IoU), training minutes (wall clock of
  the run, first to last log line of metrics.jsonl's steps, from the workdir's files' times) and the environment;
- nms_ablation.csv: the detector's last checkpoint evaluated on the 1,000 test canvases at NMS IoU thresholds
  0.3-0.9 and without NMS (threshold 1.0: nothing suppressed) with the `coco_map` evaluator;
- curves.csv: the training curves (loss terms per logged step); eval_curve.csv: every evaluation of each run;
- results.json also holds the all-background segmentation baseline (`all_background`);
- detections.png: the detector's boxes (score >= 0.45) on the first 8 test canvases beside the ground truth;
  detections_detr3.png: the same for the second-pass DETR (`config.py:detr3`) when --detr3 is given.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
NMS_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def environment() -> dict:
    import flax
    import jax
    import optax
    import pycocotools

    return {
        "device": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared with other jobs)",
        "load_average_1_5_15_min_at_study": os.getloadavg(),
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "pycocotools": getattr(pycocotools, "__version__", "2.0.11"),
    }


def read_metrics(workdir: str) -> tuple[dict, list[dict], list[dict]]:
    """(final eval metrics, train log lines, every eval line) of a run's metrics.jsonl."""
    final, train, evals = {}, [], []
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if any(k.startswith("eval/") for k in row):
                final = {k: v for k, v in row.items() if k.startswith("eval/")} | {"step": row["step"]}
                evals.append(final)
            if "train/loss" in row:
                train.append(row)
    return final, train, evals


def train_minutes(train: list[dict]) -> float:
    """Training time from the logged steps/sec of each window (excludes evaluation and start-up)."""
    total, last = 0.0, 0
    for row in train:
        total += (row["step"] - last) / row["train/steps_per_sec"]
        last = row["step"]
    return total / 60


def restore(workdir: str):
    from jaxdl.state import restore_run
    from jaxdl.train import eval_context

    run = restore_run(workdir, None, None)
    ctx = eval_context(
        run.config, run.task, run.graphdef, run.ds_info, run.mesh, run.rules, run.state_sharding, workdir
    )
    return run, ctx


def nms_ablation(workdir: str) -> list[dict]:
    from jaxdl import evaluators

    run, ctx = restore(workdir)
    rows = []
    for thr in NMS_THRESHOLDS:
        ev = evaluators.make_all({"nms": dict(kind="coco_map", split="test", iou_threshold=thr)}, ctx)["nms"]
        m = ev.evaluate(run.state)
        rows.append({"nms_iou": thr, **{k: round(v, 6) for k, v in m.items()}})
        print(rows[-1], flush=True)
    return rows


def matcher_check(workdir: str, count: int = 64) -> dict:
    """A DETR run's final checkpoint on the first `count` train canvases: the set-prediction loss terms with the
    in-step JAX auction matcher and with scipy's Hungarian matching (equal when the auction found the optimum;
    `unassigned` = objects left without a query)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxdl import data, tasks
    from jaxdl.data import canvas

    run, _ = restore(workdir)
    batch = canvas.preprocess(data.memory.read(data.load("canvas", "train"), range(count)))
    model = nnx.merge(run.graphdef, jax.device_get(run.state["params"]), jax.device_get(run.state["rest"]))
    out = model(batch["input"])
    res = {}
    for matcher in ("auction", "scipy"):
        task = tasks.make(dict(run.config.task) | {"matcher": matcher})
        loss, m = task.set_losses(model, out, jnp.asarray(batch["boxes"]), jnp.asarray(batch["label"]))
        res[matcher] = {"loss": float(loss), **{k: float(v) for k, v in m.items()}}
    return res


def draw(workdir: str, out: str, title: str = "FCOS", count: int = 8, min_score: float = 0.45) -> None:
    import jax
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from flax import nnx

    from jaxdl import data
    from jaxdl.data import canvas

    run, ctx = restore(workdir)
    source = data.load("canvas", "test")
    raw = data.memory.read(source, range(count))
    batch = canvas.preprocess(raw)
    model = nnx.merge(run.graphdef, jax.device_get(run.state["params"]), jax.device_get(run.state["rest"]))
    det = jax.device_get(model.detect(batch["input"], iou_threshold=0.6))
    fig, axes = plt.subplots(2, count // 2, figsize=(2.6 * count // 2, 5.6))
    for i, ax in enumerate(axes.ravel()):
        ax.imshow(raw["image"][i, ..., 0], cmap="gray", vmin=0, vmax=255)
        for k in np.flatnonzero(raw["label"][i] >= 0):
            x1, y1, x2, y2 = raw["boxes"][i][k]
            ax.add_patch(plt.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color="lime", lw=1, ls="--"))
        for b, s, c in zip(det["boxes"][i], det["scores"][i], det["classes"][i], strict=True):
            if c < 0 or s < min_score:
                continue
            x1, y1, x2, y2 = b
            ax.add_patch(plt.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color="red", lw=1.2))
            ax.text(x1, y1 - 1, f"{canvas.NAMES[c]} {s:.2f}", color="red", fontsize=6, va="bottom")
        ax.set_axis_off()
    fig.suptitle(f"{title} on test canvases: red = detections (score >= {min_score}), green dashed = ground truth")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print("wrote", out)


def all_background() -> dict:
    """The trivial segmenter (background everywhere) on the test canvases: pixel accuracy = background share;
    mIoU over the 11 classes = background IoU / 11 (every garment class has IoU 0)."""
    from jaxdl import data

    src = data.load("canvas_seg", "test")
    share = float((data.memory.read(src, range(len(src)))["instances"] == 0).mean())
    return {
        "eval/pixel_accuracy": share,
        "eval/miou": share / 11,
        "eval/miou_objects": 0.0,
        "eval/iou/background": share,
    }


def write_csv(path: str, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--det", required=True, help="workdir of experiments/detection/config.py:fcos")
    p.add_argument("--seg", default="", help="workdir of experiments/detection/segment.py:unet")
    p.add_argument("--detr", default="", help="workdir of experiments/detection/config.py:detr")
    p.add_argument("--detr2", default="", help="workdir of experiments/detection/config.py:detr2")
    p.add_argument("--detr3", default="", help="workdir of experiments/detection/config.py:detr3")
    p.add_argument("--skip_ablation", action="store_true")
    a = p.parse_args()
    sys.path.insert(0, os.path.dirname(HERE))
    env = environment()
    results = {"environment": env, "runs": {}}
    curves, map_curve = [], []
    named = (("fcos", a.det), ("detr", a.detr), ("detr2", a.detr2), ("detr3", a.detr3), ("seg_unet", a.seg))
    for name, workdir in named:
        if not workdir:
            continue
        final, train, evals = read_metrics(workdir)
        map_curve += [{"model": name, **e} for e in evals]
        with open(os.path.join(workdir, "config.json")) as f:
            cfg = json.load(f)
        results["runs"][name] = {
            "workdir": workdir,
            "steps": final.get("step"),
            "seed": cfg.get("seed"),
            "train_minutes": round(train_minutes(train), 2),
            "started_utc": datetime.datetime.fromtimestamp(
                os.path.getmtime(os.path.join(workdir, "config.json")), datetime.UTC
            ).isoformat(timespec="seconds"),
            **final,
        }
        curves += [{"model": name, **r} for r in train]
        if name.startswith("detr"):
            results["runs"][name]["matcher_check_64_train_canvases"] = matcher_check(workdir)
    if a.seg:
        results["runs"]["all_background"] = all_background()
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    write_csv(os.path.join(HERE, "results.csv"), [{"model": k, **v, **env} for k, v in results["runs"].items()])
    write_csv(os.path.join(HERE, "curves.csv"), curves)
    write_csv(os.path.join(HERE, "eval_curve.csv"), map_curve)
    draw(a.det, os.path.join(HERE, "detections.png"), "FCOS (NMS 0.6)")
    if a.detr3:
        draw(a.detr3, os.path.join(HERE, "detections_detr3.png"), "DETR (detr3, no NMS)", min_score=0.3)
    if not a.skip_ablation:
        rows = nms_ablation(a.det)
        write_csv(os.path.join(HERE, "nms_ablation.csv"), [{**r, **env} for r in rows])
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
