"""Transfer: pretrain LeNet-5 on Fashion-MNIST (supervised) or on its rotation-prediction pretext task
(self-supervised, Gidaris et al. 2018), then finetune on sklearn digits (1,297 train / 500 test images, 8x8
upsampled to 28x28) with 1 %, 10 % or 100 % of the labels, against training from scratch.

Commands (ROOT: any folder; pretraining first, then the sweep; README.md has the measured table):
  python -m jaxdl.main --config=experiments/transfer/config.py:pretrain_fashion --workdir=ROOT/pretrain_fashion
  python -m jaxdl.main --config=experiments/transfer/config.py:pretrain_rotation --workdir=ROOT/pretrain_rotation
  python -m jaxdl.ablate --config=experiments/transfer/config.py:finetune,root=ROOT --workdir=ROOT/finetune \
      --seeds=0,1,2
Pretraining: AdamW 2e-3, warmup + cosine, batch 128, 2,000 steps. Finetuning: every layer, Adam 1e-3 constant,
300 steps, batch min(64, labelled examples); the head is always fresh (init_exclude="head"); the label subsets are
class-stratified and drawn per seed (jaxdl.data.subset), 1 % = 1 image per class.
Args: pretrain_fashion | pretrain_rotation | finetune,root=ROOT; add `,smoke` for a 30-step version.
"""

import ml_collections

from jaxdl import config as config_lib
from jaxdl.ablate import product

FRACTIONS = (0.01, 0.1, 1.0)
DATA = {"pretrain_fashion": "fashion_mnist", "pretrain_rotation": "fashion_mnist_rotation", "finetune": "digits"}


def _parse(arg: str) -> tuple[str, str, bool]:
    a = config_lib.parse_arg(arg, mode=tuple(DATA), root="")
    if (a.mode == "finetune") != bool(a.root):
        raise ValueError(f"config arg {arg!r}: expected pretrain_fashion | pretrain_rotation | finetune,root=ROOT")
    return a.mode, a.root, a.smoke


def get_config(arg: str = "pretrain_fashion") -> ml_collections.ConfigDict:
    mode, _, smoke = _parse(arg)
    c = config_lib.base()
    c.data.name = DATA[mode]
    c.model = ml_collections.ConfigDict({"name": "lenet"})
    c.train.progress = False
    if mode == "finetune":
        c.data.batch_size = 64
        c.data.eval_batch_size = 500
        c.optim.name = "adam"
        c.optim.lr = 1e-3
        c.train.steps = 300
        c.train.log_every = 25
        c.train.eval_every = 100
        c.train.checkpoint_every = 0
        c.train.async_checkpoints = False
        c.train.init_exclude = "head"
    else:
        c.data.batch_size = 128
        c.data.eval_batch_size = 1000
        c.optim.name = "adamw"
        c.optim.lr = 2e-3
        c.optim.weight_decay = 1e-4
        c.optim.schedule = "warmup_cosine"
        c.optim.warmup_steps = 100
        c.train.steps = 2000
        c.train.log_every = 100
        c.train.eval_every = 500
        c.train.checkpoint_every = 1000
    return config_lib.shrink_for_smoke(c) if smoke else c


def get_sweep(arg: str = ""):
    mode, root, smoke = _parse(arg)
    if mode != "finetune":
        raise ValueError("the sweep is the finetune stage: use the arg finetune,root=ROOT")
    init = [
        {"_name": "scratch", "train.init_from": ""},
        {"_name": "fashion_supervised", "train.init_from": f"{root}/pretrain_fashion"},
        {"_name": "rotation_selfsup", "train.init_from": f"{root}/pretrain_rotation"},
    ]
    # 1 % of 1,297 is one image per class (10): the batch is then the whole labelled set
    labels = [
        {
            "_name": f"labels={f:g}",
            "data.train_fraction": f,
            "data.batch_size": 10 if f < 0.05 else (32 if smoke else 64),
        }
        for f in FRACTIONS
    ]
    return product(labels, init)
