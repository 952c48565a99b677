"""Byte-level language models on CPython's pydoc topics text: GPT vs recurrent LM (vs the n-gram baselines of
ngram.py), in bits per byte on the test split (= eval/loss / ln 2).

Commands: python -m jaxdl.main --config=experiments/language/config.py:gpt --workdir=DIR
          python -m jaxdl.ablate --config=experiments/language/config.py --workdir=DIR --seeds=0,1,2
Data: pydoc_bytes128 (128-byte windows, next-byte targets; train 438 k bytes, test 29 k bytes; splits by
document, jaxdl/data/text_corpora.py). Both models: AdamW 2e-3, warmup 100 + cosine, batch 32, 800 steps
(~7.5 epochs), dropout 0.1. GPT: 4 layers, d 128, 4 heads, RoPE, tied embeddings (0.83 M parameters).
LSTM: jaxdl.models.language.rnn_lm, 1 layer, d 256.
Args: gpt | lstm for one run (`,smoke` for 30 steps); the sweep runs both.
Output head: `--config.model.head=sampled|hierarchical` (default full) with `num_sampled`, `proposal`,
`proposal_power`, `sample_unique`, `tree` (jaxdl/models/language/_lm_head.py; README "Output heads in the trainer").
"""

import ml_collections

from jaxdl import config as config_lib
from jaxdl.models.language._lm_head import options as head_options

MODELS = {
    "gpt": dict(name="gpt", dim=128, depth=4, heads=4, dropout=0.1),
    "lstm": dict(name="rnn_lm", cell="lstm", dim=256, layers=1, dropout=0.1),
}


def get_config(arg: str = "gpt") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(arg, model=tuple(MODELS))
    smoke = a.smoke
    c = config_lib.base()
    c.data.name = "pydoc_bytes128"
    c.task.name = "lm"
    c.evals.main = dict(kind="perplexity", unit="byte")  # eval/loss, eval/perplexity, eval/bits_per_byte
    c.data.batch_size = 32
    c.data.eval_batch_size = 64
    c.model = ml_collections.ConfigDict(MODELS[a.model])
    # head="full": the models' own projection; the keys make --config.model.head=... work
    c.model.update({k: v for k, v in head_options().items() if k != "label_counts"})
    c.model.tie_embeddings = c.model.name == "gpt"  # each model's default, settable (hierarchical needs False)
    c.optim.name = "adamw"
    c.optim.lr = 2e-3
    c.optim.weight_decay = 0.01
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 100
    c.optim.clip_norm = 1.0
    c.train.steps = 800
    c.train.log_every = 50
    c.train.eval_every = 200
    c.train.checkpoint_every = 400
    c.train.progress = False
    return config_lib.shrink_for_smoke(c) if smoke else c


def get_sweep(arg: str = ""):
    del arg
    return [{"_name": name, **{f"model.{k}": v for k, v in m.items()}} for name, m in MODELS.items()]
