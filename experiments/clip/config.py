"""CLIP-style contrastive pretraining on Fashion-MNIST image–caption pairs with held-out classes
(jaxdl.data.fmnist_captions: trouser, pullover, ankle boot are never seen or named in training).

One run (README.md has the measured numbers and the study script):
  python -m jaxdl.main --config=experiments/clip/config.py:infonce --workdir=/tmp/runs/clip_infonce
Args: infonce | siglip (the loss); seed=N; steps=N; `,smoke` for seconds.
Setup: image tower ResNet-8 (jaxdl.models.vision.resnet, BatchNorm) and text tower a 2-layer BERT encoder over
the first 64 caption bytes (dim 64, 4 heads), both projected to 64-d; batch 128; AdamW 2e-3, warmup 40 +
cosine, weight decay 0.1; 400 steps (1.2 epochs of the 42,000 seen-class pairs: what 2 shared CPU cores allow,
~25 min per run with the evaluators); duplicate captions in a batch are not negatives. SigLIP starts at
t = log 10, bias -10 (the paper's init). Evaluators at the end: zero-shot accuracy with prompt ensembles on
seen (7-way, chance 14.3 %), held-out (3-way, chance 33.3 %) and all classes (10-way, chance 10 %), the same
with name-only prompts and with name-free descriptions, a linear probe (10,000 `probe` images, all classes) and image <-> text recall@1/5 over
1,000 test pairs. Study: `python experiments/clip/study.py --workdir=/tmp/runs --seeds=0`.
Expected: README.md's table.
"""

import ml_collections

from jaxdl import config as config_lib


def get_config(arg: str = "infonce") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(arg, loss=("infonce", "siglip"), seed=0, steps=400)
    c = config_lib.base()
    c.seed = a.seed
    c.data.name = "fmnist_captions"
    c.data.batch_size = 128
    c.data.eval_batch_size = 500
    c.model = ml_collections.ConfigDict(
        dict(
            name="clip",
            embed_dim=64,
            image_encoder="resnet",
            image_depth=8,
            text_length=64,
            text_dim=64,
            text_depth=2,
            text_heads=4,
            text_mlp_dim=128,
            init_temperature=0.07 if a.loss == "infonce" else 0.1,
            init_bias=0.0 if a.loss == "infonce" else -10.0,
        )
    )
    c.task = ml_collections.ConfigDict(dict(name="contrastive", loss=a.loss))
    c.mesh.data = 1
    c.optim.name = "adamw"
    c.optim.lr = 2e-3
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 40
    c.optim.weight_decay = 0.1
    c.train.steps = a.steps
    c.train.log_every = 50
    c.train.eval_every = 0
    c.train.checkpoint_every = 0
    c.train.async_checkpoints = False
    c.train.progress = False
    c.evals = ml_collections.ConfigDict(
        dict(
            zero_shot=dict(kind="zero_shot", every=0),
            zero_shot_names=dict(kind="zero_shot", every=0, prompt_set="names"),
            zero_shot_desc=dict(kind="zero_shot", every=0, prompt_set="descriptions"),
            linear_probe=dict(kind="linear_probe", every=0),
            retrieval=dict(kind="retrieval", every=0, size=1000),
        )
    )
    return config_lib.shrink_for_smoke(c) if a.smoke else c
