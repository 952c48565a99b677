"""Optimizer × learning-rate schedule, and normalization × dropout, on MNIST-1D with the paper's CNN (cnn1d).

Commands: python -m jaxdl.ablate --config=experiments/optim/config.py --workdir=DIR --seeds=0,1,2
          python -m jaxdl.ablate --config=experiments/optim/config.py:norm --workdir=DIR2 --seeds=0,1,2
Optimizer study (arg ""): 4 optimizers (SGD, momentum 0.9, Adam, AdamW with decoupled weight decay 1e-2) at the
learning rates of LRS × 3 schedules: constant; linear warmup (5 % of steps) + cosine to 0; step (×0.1 at 1/2 and
3/4 of training, as in the ResNet paper). Norm study (arg `norm`): BatchNorm / LayerNorm (over channels) / none
after every conv × dropout 0 / 0.2 before the head, with Adam 3e-3 warmup + cosine.
Batch 100, 3,000 steps (half the MNIST-1D paper's 6,000). Add `,smoke` to the arg for a 30-step version.
"""

import ml_collections

from jaxdl import config as config_lib
from jaxdl.ablate import axis, product

STEPS = 3000
LRS = {"sgd": 0.1, "momentum": 0.01, "adam": 3e-3, "adamw": 3e-3}


def _parse(arg: str) -> tuple[bool, bool]:
    a = config_lib.parse_arg(arg, norm=bool)
    return a.norm, a.smoke


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    norm, smoke = _parse(arg)
    c = config_lib.base()
    c.data.name = "mnist1d"
    c.data.batch_size = 100
    c.data.eval_batch_size = 1000
    c.model = ml_collections.ConfigDict(dict(name="cnn1d"))
    c.optim.name = "adam"
    c.optim.lr = 3e-3
    c.train.steps = STEPS
    c.train.log_every = 100
    c.train.eval_every = 500
    c.train.checkpoint_every = 0
    c.train.async_checkpoints = False
    c.train.progress = False
    if norm:
        c.optim.schedule = "warmup_cosine"
        c.optim.warmup_steps = STEPS // 20
    return config_lib.shrink_for_smoke(c) if smoke else c


def get_sweep(arg: str = ""):
    norm, smoke = _parse(arg)
    if norm:
        return product(axis("model.norm", ["batch", "layer", "none"]), axis("model.dropout", [0.0, 0.2]))
    steps = 30 if smoke else STEPS
    optimizers = [
        {"_name": name, "optim.name": name, "optim.lr": lr, "optim.weight_decay": 1e-2 if name == "adamw" else 0.0}
        for name, lr in LRS.items()
    ]
    schedules = [
        {"_name": "constant", "optim.schedule": "constant"},
        {"_name": "warmup_cosine", "optim.schedule": "warmup_cosine", "optim.warmup_steps": steps // 20},
        {"_name": "step", "optim.schedule": "multistep", "optim.boundaries": (steps // 2, 3 * steps // 4)},
    ]
    return product(optimizers, schedules)
