"""A tiny ablation on MNIST-1D for the tests and as a template: model (mlp | logistic) × optimizer (adam | sgd).

Command: python -m jaxdl.ablate --config=experiments/ablate_smoke/config.py --workdir=DIR --seeds=0,1
4 cells × 2 seeds = 8 runs of 30 steps (batch 32), a few seconds each on 2 CPU cores, most of it compilation.
After 30 steps test accuracy is only ~0.2-0.35 (the MNIST-1D paper's full-length numbers: MLP 68 %,
logistic 32 %); the point is the machinery: results.md/csv, learning_curves.png, final_eval_accuracy.png.
Arg: none (or `smoke`, ignored: it is already small).
"""

import ml_collections

from jaxdl import config as config_lib
from jaxdl.ablate import axis, product, zip_


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    config_lib.parse_arg(arg)
    c = config_lib.base()
    c.data.name = "mnist1d"
    c.data.batch_size = 32
    c.data.eval_batch_size = 200  # divisible by the 8 simulated devices of the tests
    c.model = ml_collections.ConfigDict({"name": "mlp"})
    c.optim.name = "adam"
    c.optim.lr = 1e-2
    c.train.steps = 30
    c.train.log_every = 10
    c.train.eval_every = 10
    c.train.checkpoint_every = 0  # only at the end
    c.train.async_checkpoints = False
    c.train.progress = False
    return c


def get_sweep(arg: str = ""):
    # sgd gets its own learning rate: zip_ pairs each optimizer with its lr, product crosses that with the model
    return product(
        axis("model.name", ["mlp", "logistic"]),
        zip_(axis("optim.name", ["adam", "sgd"]), axis("optim.lr", [1e-2, 1e-1])),
    )
