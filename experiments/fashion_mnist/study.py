"""LeNet-5 vs ResNet-20 vs ViT-tiny on Fashion-MNIST, with and without augmentation (random crop, pad 2 + flip).

Command: python -m jaxdl.ablate --config=experiments/fashion_mnist/study.py --workdir=DIR --seeds=0
All arms: AdamW, warmup + cosine, batch 128, 600 steps (1.3 epochs), the same budget for every model so the
table compares architectures at equal steps (2 CPU cores bound the budget; the full-length LeNet run of
config.py:lenet reaches 90.8 % in 15 epochs). lr: LeNet 2e-3, ResNet-20 (BatchNorm) 2e-3, ViT 1e-3.
ViT-tiny here: patch 4 (49 tokens + class token), dim 96, depth 4, 3 heads, MLP 192 (0.3 M parameters).
Reference points: the Fashion-MNIST benchmark lists ~89-92 % for small CNNs and ~93-95 % for ResNets trained
for many epochs.
Arg: "" or `smoke`.
"""

import ml_collections

from jaxdl import config as config_lib
from jaxdl.ablate import product

ARMS = [
    dict(_name="lenet", **{"model.name": "lenet", "optim.lr": 2e-3}),
    dict(_name="resnet20", **{"model.name": "resnet", "model.depth": 20, "optim.lr": 2e-3}),
    dict(
        _name="vit_tiny",
        **{"model.name": "vit", "model.patch": 4, "model.dim": 96, "model.depth": 4, "model.heads": 3},
        **{"model.mlp_dim": 192, "model.pool": "cls", "optim.lr": 1e-3},
    ),
]


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    smoke = config_lib.parse_arg(arg).smoke
    c = config_lib.base()
    c.data.name = "fashion_mnist"
    c.data.batch_size = 128
    c.data.eval_batch_size = 1000
    c.model = ml_collections.ConfigDict(dict(name="lenet"))
    c.optim.name = "adamw"
    c.optim.lr = 2e-3
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
    aug = [
        dict(_name="none"),
        dict(_name="crop+flip", **{"data.augment.crop_padding": 2, "data.augment.flip": True}),
    ]
    return product(ARMS, aug)
