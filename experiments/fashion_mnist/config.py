"""LeNet-5 on Fashion-MNIST (Debian package dataset-fashion-mnist; 60k train / 10k test).

Command: python -m jaxdl.main --config=experiments/fashion_mnist/config.py:lenet --workdir=DIR
Args: `lenet[,smoke]`. AdamW lr 2e-3, warmup + cosine, batch 128, 15 epochs (7,030 steps).
Fashion-MNIST benchmark figures for small CNNs: about 91 % (dataset README); the bar for this config is 89 %.
Runtime and measured accuracy: experiments/fashion_mnist/README.md.
"""

import ml_collections

from jaxdl import config as config_lib


def get_config(arg: str = "lenet") -> ml_collections.ConfigDict:
    smoke = config_lib.parse_arg(arg, model=("lenet",)).smoke
    c = config_lib.base()
    c.data.name = "fashion_mnist"
    c.data.batch_size = 128
    c.data.eval_batch_size = 1000
    c.model = ml_collections.ConfigDict({"name": "lenet"})
    c.optim.name = "adamw"
    c.optim.lr = 2e-3
    c.optim.weight_decay = 1e-4
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 200
    c.train.steps = 7030
    c.train.log_every = 200
    c.train.eval_every = 1000
    c.train.checkpoint_every = 1000
    return config_lib.shrink_for_smoke(c) if smoke else c
