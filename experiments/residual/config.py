"""Plain vs residual networks at depth 20 and 56 (He et al. 2016, figure 6 / section 4.2) on Fashion-MNIST
(average-pooled to 14x14: depth-56 nets cost 4x less, which is what makes the study fit 2 CPU cores).

Command: python -m jaxdl.ablate --config=experiments/residual/config.py --workdir=DIR --seeds=0
The CIFAR-style nets of jaxdl.models.vision.resnet (3 stages of 16/32/64 channels, BatchNorm, option-A shortcuts);
`residual=False` gives the paper's plain nets. The claim: deeper plain nets have *higher training error*
(degradation), deeper residual nets do not. The paper trains 64k steps on CIFAR-10; on 2 CPU cores we train
600 steps (0.64 epochs, batch 64, SGD momentum 0.9, lr 0.1 with 50 warmup steps then cosine, weight decay 1e-4)
and compare training-error curves (learning_curves.png, logged every 25 steps) and final accuracies.
Arg: "" or `smoke` (30 steps, for the tests).
"""

import ml_collections

from jaxdl import config as config_lib
from jaxdl.ablate import axis, product


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    smoke = config_lib.parse_arg(arg).smoke
    c = config_lib.base()
    c.data.name = "fashion_mnist_14"
    c.data.batch_size = 64
    c.data.eval_batch_size = 1000
    c.model = ml_collections.ConfigDict(dict(name="resnet", depth=20, norm="batch", residual=True))
    c.optim.name = "momentum"
    c.optim.lr = 0.1
    c.optim.momentum = 0.9
    c.optim.weight_decay = 1e-4
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 50
    c.train.steps = 600
    c.train.log_every = 25
    c.train.eval_every = 150
    c.train.checkpoint_every = 300
    c.train.progress = False
    return config_lib.shrink_for_smoke(c) if smoke else c


def get_sweep(arg: str = ""):
    return product(axis("model.residual", [False, True]), axis("model.depth", [20, 56]))
