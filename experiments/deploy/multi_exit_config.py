"""Multi-exit CNN on Fashion-MNIST (README "Multi-exit networks"): `multi_exit` model (conv blocks of 8, 16, 32
channels, a linear exit after each), trained with `config.task.name="multi_exit"` (sum of the three exits'
cross-entropies, equal weights), Adam 1e-3 warmup + cosine, batch 128, 1,500 steps (3.5 epochs of 55,000).

  python -m jaxdl.main --config=experiments/deploy/multi_exit_config.py --workdir=/tmp/multi_exit/train
  nice python experiments/deploy/multi_exit_study.py --workdir=/tmp/multi_exit \\
      --out=experiments/deploy/multi_exit_results.json       # trains (if needed), then the τ sweep + latency

Data `fashion_mnist_val` (55,000 train / 5,000 validation / 10,000 test). Arg: "" or "smoke" (30 steps).
Runtime on the reference machine (2 shared CPU cores): ≈ 4–6 min of training. Expected: last-exit test accuracy
≈ 88 %, the first exit a few points lower at ~1/4 of the FLOPs.
"""

import ml_collections

from jaxdl import config as config_lib

CHANNELS = (8, 16, 32)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(arg)
    c = config_lib.base()
    c.data.name = "fashion_mnist_val"
    c.data.batch_size = 128
    c.data.eval_batch_size = 1000
    c.model = ml_collections.ConfigDict({"name": "multi_exit", "channels": CHANNELS})
    c.task = ml_collections.ConfigDict({"name": "multi_exit", "weights": ()})
    c.optim.name, c.optim.lr = "adam", 1e-3
    c.optim.schedule, c.optim.warmup_steps = "warmup_cosine", 50
    c.train.steps = 1500
    c.train.progress = False
    c.train.log_every = 100
    c.train.eval_every = 0
    c.train.checkpoint_every = 0
    c.train.async_checkpoints = False
    c.evals = ml_collections.ConfigDict(
        {"val": dict(kind="classify", split="validation"), "test": dict(kind="classify", split="test")}
    )
    return config_lib.shrink_for_smoke(c) if a.smoke else c
