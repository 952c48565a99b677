"""Semantic segmentation of the Fashion-MNIST canvases (jaxdl.data.canvas `canvas_seg`: 11 classes, background +
10 garments, per-pixel labels from the instance masks): U-Net (jaxdl.models `seg_unet`) on the residual backbone of the
detector, task `segment`, evaluator `miou` (mean and per-class IoU over the 1,000 test canvases).

    python -m jaxdl.main --config=experiments/detection/segment.py:unet --workdir=/tmp/runs/seg_unet
Args: unet; `,smoke` for seconds; seed=N; steps=N. Setup: width 16 (encoder 16/32/64/128), GroupNorm, AdamW 2e-3,
100 warmup steps + cosine, weight decay 1e-4, batch 32, 400 steps (1.6 epochs). ~20 min on 2 shared CPU cores. The measured
mIoU is in README.md.
"""

import importlib.util
import os

import ml_collections

from jaxdl import config as config_lib

# config.py beside this file, loaded by path under its own name (a bare `import config` could find another study's)
_spec = importlib.util.spec_from_file_location(
    "jaxdl_experiments_detection_config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.py")
)
_detection = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_detection)
canvas_recipe = _detection.canvas_recipe


def get_config(arg: str = "unet") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(arg, model=("unet",), seed=0, steps=400)
    c = config_lib.base()
    c.seed = a.seed
    c.data.name = "canvas_seg"
    c.data.batch_size = 32
    c.data.eval_batch_size = 100
    c.model = ml_collections.ConfigDict(dict(name="seg_unet", width=16))
    c.task = ml_collections.ConfigDict(dict(name="segment"))
    c.evals = ml_collections.ConfigDict({"main": dict(kind="miou", every=0)})
    canvas_recipe(c, steps=a.steps, log_every=50, checkpoint_every=300)
    return config_lib.shrink_for_smoke(c) if a.smoke else c
