"""Quantization study on the MNIST-1D MLP: fp32 vs post-training quantization (w8a8 dynamic / static abs-max /
static percentile, w8a16, w4a16) vs a short quantization-aware fine-tune.

Command: python experiments/quantization/run.py --workdir=/tmp/quant          (add --arg=mlp,smoke: seconds)
Args: `mlp[,smoke]`. `get_config` is the trainer config of the float model: the training settings of
experiments/mnist1d/config.py:mlp,defaults (jaxdl's defaults, not the authors' setup `mlp`: Flax initializers, plain
MLP, a new batch permutation every epoch, Adam lr 1e-2, batch 100, 6,000 steps; seed 0, which run.py replaces per
seed), without its periodic evaluations and checkpoints (evaluated once at the end; tests/test_quantization_config.py
checks the equality), so results.json's fp32 rows are experiments/mnist1d/results.csv's `defaults` MLP runs (68.5 /
69.1 / 68.5 % for seeds 0 / 1 / 2 in both); `get_study` holds the quantization settings run.py sweeps.
Runtime on the reference machine (2 CPU cores): ~4 min for 3 seeds. Expected: int8 (w8a8, w8a16) within ~0.5
points of fp32 (67–69 %: 68.7 ± 0.3 under jax 0.12.1, 67.3 ± 1.2 under 0.12.0.1); results and discussion in
experiments/quantization/README.md.
"""

import ml_collections

from jaxdl import config as config_lib


def get_config(arg: str = "mlp") -> ml_collections.ConfigDict:
    smoke = config_lib.parse_arg(arg, model=("mlp",)).smoke
    c = config_lib.base()
    c.data.name = "mnist1d"
    c.data.batch_size = 100
    c.data.eval_batch_size = 1000
    c.model = ml_collections.ConfigDict({"name": "mlp"})
    c.optim.name = "adam"
    c.optim.lr = 1e-2
    c.train.steps = 6000
    c.train.log_every = 200
    c.train.eval_every = 0
    c.train.checkpoint_every = 0
    c.train.progress = False
    return config_lib.shrink_for_smoke(c) if smoke else c


def get_study(arg: str = "mlp") -> ml_collections.ConfigDict:
    smoke = config_lib.parse_arg(arg, model=("mlp",)).smoke
    s = ml_collections.ConfigDict()
    s.seeds = (0,) if smoke else (0, 1, 2)
    s.calibration_batches = 8  # first 8 x 100 training examples (file order) for static activation scales
    s.percentile = 99.99
    # (row name, mode, group_size, calibration); group_size >= K means one int4 group per column (K <= 100 here)
    s.ptq = (
        ("PTQ w8a8, dynamic per-token act.", "w8a8", 128, "dynamic"),
        ("PTQ w8a8, static abs-max act.", "w8a8", 128, "absmax"),
        ("PTQ w8a8, static 99.99-pct act.", "w8a8", 128, "percentile"),
        ("PTQ w8a16", "w8a16", 128, "dynamic"),
        ("PTQ w4a16, per column (g = K)", "w4a16", 128, "dynamic"),
        ("PTQ w4a16, g = 20", "w4a16", 20, "dynamic"),
    )
    # QAT: fine-tune the trained fp32 model with fake quantization, then convert; the control fine-tunes in
    # float for the same steps (then PTQ), so the QAT rows compare against the same amount of extra training.
    s.finetune_steps = 20 if smoke else 1000
    s.finetune_lr = 1e-3
    s.qat = (("w8a8", 128), ("w4a16", 128), ("w4a16", 20))
    return s
