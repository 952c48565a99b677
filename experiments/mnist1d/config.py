"""MNIST-1D (Greydanus 2020) baselines: logistic, MLP, CNN, GRU, on the default or shuffled sequences.

Command (the README's main job): python -m jaxdl.main --config=experiments/mnist1d/config.py:cnn --workdir=DIR
Args: `<model>[,shuffled][,defaults][,smoke]`, model in logistic | mlp | cnn | gru.
Paper setup, as the authors' code runs it (greydanus/mnist1d notebooks/train.py + models.py): Adam lr 1e-2,
batch 100, 8,000 steps, no weight decay, the train split in fixed order (batch i of every epoch = examples
100i..100i+99, never reshuffled), PyTorch's default initialization (`init="torch"`), the MLP's residual second
layer, torch.nn.GRU's cell (biases on the hidden side too); `,shuffled` permutes the 40 time steps with the
authors' permutation (data `mnist1d_shuffled_paper`). `,defaults` is the setup this table had before it followed
the authors' code (jaxdl's defaults: Flax initializers, a new batch permutation every epoch, plain MLP,
nnx.GRUCell, 6,000 steps, `mnist1d_shuffled`'s permutation). Paper test accuracy (default / shuffled): logistic 32 / 32 %, MLP 68 / 68 %,
CNN 94 / 56 %, GRU 91 / 57 %.
Runtime on the reference machine (2 CPU cores), our measured numbers and the authors' code's:
experiments/mnist1d/README.md (CNN: ~1 min, test accuracy ~93-94 %).
"""

import ml_collections

from jaxdl import config as config_lib

MODELS = {"logistic": "logistic", "mlp": "mlp", "cnn": "cnn1d", "gru": "gru"}
# The paper code's architecture details that are options of our models (their defaults are jaxdl's).
PAPER_MODEL_OPTIONS = {"logistic": {}, "mlp": {"residual": True}, "cnn": {}, "gru": {"hidden_bias": True}}


def get_config(arg: str = "cnn") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(arg, model=tuple(MODELS), shuffled=bool, defaults=bool)
    c = config_lib.base()
    c.seed = 0
    c.data.name = ("mnist1d_shuffled" if a.defaults else "mnist1d_shuffled_paper") if a.shuffled else "mnist1d"
    c.data.batch_size = 100
    c.data.eval_batch_size = 1000
    c.optim.name = "adam"
    c.optim.lr = 1e-2
    if a.defaults:
        c.model = ml_collections.ConfigDict({"name": MODELS[a.model], "init": "flax"})
        c.data.order = "shuffle"
        c.train.steps = 6000
    else:
        c.model = ml_collections.ConfigDict({"name": MODELS[a.model], "init": "torch", **PAPER_MODEL_OPTIONS[a.model]})
        c.data.order = "sequential"
        c.train.steps = 8000
    c.train.log_every = 200
    c.train.eval_every = 1000
    c.train.checkpoint_every = 1000
    return config_lib.shrink_for_smoke(c) if a.smoke else c
