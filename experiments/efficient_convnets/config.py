"""Efficient convnets on Fashion-MNIST: ResNet-20 vs MobileNetV2 (inverted residuals, ReLU6) vs EfficientNet-style
MBConv (the same blocks + squeeze-excitation 0.25 + swish), at one budget.

One arm:  python -m jaxdl.main --config=experiments/efficient_convnets/config.py:mobilenet_v2 --workdir=DIR
The study (every arm, then results.json / results.csv; README.md has the table):
  python experiments/efficient_convnets/study.py --workdir=/tmp/runs/effconv --seeds=0
Args: resnet20 | mobilenet_v2 | mbconv_se; steps=N; seed=N; `,smoke` for seconds.
Setup: every arm AdamW 2e-3, weight decay 1e-4, warmup 20 + cosine, batch 128, 200 steps (0.43 epoch: what 2
shared CPU cores allow for three arms in this session), test accuracy on all 10,000 test images at the end.
Parameters: ResNet-20 0.27 M, MobileNetV2 ("fmnist" stages) 0.15 M, MBConv-SE 0.18 M.
Expected (README.md, seed 0): see the table there; ~5-10 min per arm on 2 shared cores.
"""

import ml_collections

from jaxdl import config as config_lib

ARMS = {
    "resnet20": dict(name="resnet", depth=20),
    "mobilenet_v2": dict(name="mobilenet_v2"),
    "mbconv_se": dict(name="mobilenet_v2", se_ratio=0.25, activation="swish"),
}


def get_config(arg: str = "mobilenet_v2") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(arg, arm=tuple(ARMS), steps=200, seed=0)
    c = config_lib.base()
    c.seed = a.seed
    c.data.name = "fashion_mnist"
    c.data.batch_size = 128
    c.data.eval_batch_size = 1000
    c.model = ml_collections.ConfigDict(ARMS[a.arm])
    c.mesh.data = 1
    c.optim.name = "adamw"
    c.optim.lr = 2e-3
    c.optim.weight_decay = 1e-4
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 20
    c.train.steps = a.steps
    c.train.log_every = 25
    c.train.eval_every = 0
    c.train.checkpoint_every = 0
    c.train.async_checkpoints = False
    c.train.progress = False
    return config_lib.shrink_for_smoke(c) if a.smoke else c
