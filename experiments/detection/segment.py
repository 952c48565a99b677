"""Semantic segmentation of the Fashion-MNIST canvases (jaxdl.data.canvas `canvas_seg`: 11 classes, background +
10 garments, per-pixel labels from the instance masks): U-Net (jaxdl.models `seg_unet`) on the residual backbone of the
detector, task `segment`, evaluator `miou` (mean and per-class IoU over the 1,000 test canvases).

    python -m jaxdl.main --config=experiments/detection/segment.py:unet --workdir=/tmp/runs/seg_unet
Args: unet; `,smoke` for seconds; seed=N; steps=N. Setup: width 16 (encoder 16/32/64/128), GroupNorm, AdamW 2e-3,
100 warmup steps + cosine, weight decay 1e-4, batch 32, 400 steps (1.6 epochs). ~20 min on 2 shared CPU cores. The measured
mIoU is in README.md.
"""

import ml_collections

from jaxdl import config as config_lib


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
    c.mesh.data = 1
    c.optim.name = "adamw"
    c.optim.lr = 2e-3
    c.optim.weight_decay = 1e-4
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 100
    c.train.steps = a.steps
    c.train.log_every = 50
    c.train.eval_every = 0
    c.train.checkpoint_every = 300
    c.train.async_checkpoints = False
    c.train.progress = False
    return config_lib.shrink_for_smoke(c) if a.smoke else c
