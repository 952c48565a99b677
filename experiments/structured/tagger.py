"""Japanese NER on the Hironsan corpus (jaxdl.data.hironsan, 5-fold CV): BiLSTM-softmax vs BiLSTM-CRF taggers
(word embeddings + character BiLSTM, Lample et al. 2016), entity F1 with seqeval.

One run = one head on one fold (train on 400 sentences, evaluate on the fold's 100):
  python -m jaxdl.main --config=experiments/structured/tagger.py:crf,fold=0 --workdir=/tmp/runs/tag_crf_f0
The study (both heads x 5 folds, then the table; README.md has the measured numbers):
  python experiments/structured/tagging_study.py --workdir=/tmp/runs/tagging
Args: softmax | crf | crf_free (CRF without the BIO constraints); fold=0..4; `,smoke` for 30 steps.
Setup: Adam 2e-3, clip 5, batch 32, 600 steps (48 epochs of the 400 training sentences), dropout 0.5, word
embeddings 100, char embeddings 30 -> char BiLSTM 2x25, word BiLSTM 2x64. 3-8 min per run on 2 shared cores.
Expected test-fold entity F1 (README.md, n = 5 folds): softmax 64.4 ± 3.5 %, crf 69.2 ± 2.7 %.
"""

import ml_collections

from jaxdl import config as config_lib
from jaxdl.data import hironsan

HEADS = {"softmax": ("softmax", "none"), "crf": ("crf", "bio"), "crf_free": ("crf", "none")}


def get_config(arg: str = "crf,fold=0") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(arg, head=tuple(HEADS), fold=0)
    if not 0 <= a.fold < hironsan.FOLDS:
        raise ValueError(f"config arg {arg!r}: fold={a.fold} is not in [0, {hironsan.FOLDS})")
    head, constraints = HEADS[a.head]
    c = config_lib.base()
    c.data.name = f"hironsan_ner_fold{a.fold}"
    c.data.batch_size = 32
    c.data.eval_batch_size = 100
    c.model = ml_collections.ConfigDict(
        dict(
            name="bilstm_tagger",
            word_vocab=hironsan.WORD_VOCAB,
            char_vocab=hironsan.CHAR_VOCAB,
            head=head,
            constraints=constraints,
            tag_names=",".join(hironsan.TAGS),
            hidden=64,
        )
    )
    c.task = ml_collections.ConfigDict(dict(name="tag"))
    c.mesh.data = 1
    c.optim.name = "adam"
    c.optim.lr = 2e-3
    c.optim.clip_norm = 5.0
    c.train.steps = 600
    c.train.log_every = 100
    c.train.eval_every = 200
    c.train.checkpoint_every = 0
    c.train.async_checkpoints = False
    c.train.progress = False
    return config_lib.shrink_for_smoke(c) if a.smoke else c
