"""MNIST-1D (Greydanus 2020) baselines: logistic, MLP, CNN, GRU, on the default or shuffled sequences.

Command (the README's main job): python -m jaxdl.main --config=experiments/mnist1d/config.py:cnn --workdir=DIR
Args: `<model>[,shuffled][,smoke]`, model in logistic | mlp | cnn | gru.
Paper setup: Adam lr 1e-2, batch 100, 6000 steps, no weight decay. Paper test accuracy (default / shuffled):
logistic 32 / 32 %, MLP 68 / 68 %, CNN 94 / 56 %, GRU 91 / 57 %.
Runtime on the reference machine (2 CPU cores) and our measured numbers: experiments/mnist1d/README.md.
"""

import ml_collections

from jaxdl import config as config_lib

MODELS = {"logistic": "logistic", "mlp": "mlp", "cnn": "cnn1d", "gru": "gru"}


def get_config(arg: str = "cnn") -> ml_collections.ConfigDict:
    tokens, smoke = config_lib.parse_arg(arg)
    model = [t for t in tokens if t in MODELS]
    unknown = [t for t in tokens if t not in MODELS and t != "shuffled"]
    if unknown or len(model) != 1:
        raise ValueError(f"config arg {arg!r}: expected <model>[,shuffled][,smoke] with model in {sorted(MODELS)}")
    c = config_lib.base()
    c.seed = 0
    c.data.name = "mnist1d_shuffled" if "shuffled" in tokens else "mnist1d"
    c.data.batch_size = 100
    c.data.eval_batch_size = 1000
    c.model = ml_collections.ConfigDict({"name": MODELS[model[0]]})
    c.optim.name = "adam"
    c.optim.lr = 1e-2
    c.train.steps = 6000
    c.train.log_every = 200
    c.train.eval_every = 1000
    c.train.checkpoint_every = 1000
    return config_lib.shrink_for_smoke(c) if smoke else c
