"""Number translation, English words -> digits ("three hundred and forty-two thousand and seven" -> "342007"):
a transformer encoder-decoder (jaxdl.models.language.seq2seq) vs an LSTM encoder-decoder with Bahdanau attention
(jaxdl.models.language.lstm_seq2seq), then greedy vs beam-search exact-match accuracy on the test split.

Train:     python -m jaxdl.main --config=experiments/language/translation.py:transformer --workdir=DIR
           python -m jaxdl.main --config=experiments/language/translation.py:lstm --workdir=DIR
Decode:    the run's `greedy` and `beam4` evaluators (jaxdl/evaluators/translate.py: exact match + BLEU on the test
           split) run at the end of training; on any checkpoint:
           python -m jaxdl.evaluate --workdir=DIR --evals=greedy,beam4 [--step=N]
Data: numbers_words2digits (jaxdl/data/translation.py): 50 k train / 2 k test numbers in [0, 1e6), disjoint;
byte tokens + PAD/BOS/EOS (vocab 259), source 80, target 8. Both models: AdamW, warmup 100 + cosine, batch 64,
1,200 steps (~1.5 epochs), clip 1.0. Transformer: 3 + 3 layers, d 128, 4 heads, sinusoidal positions, tied
embeddings, dropout 0.1 (1.42 M parameters). LSTM: embed 64, 1 bidirectional encoder layer of 256 per direction,
decoder 256, attention 128 (2.15 M parameters).
Runtime and accuracy (2 shared CPU cores; experiments/language/README.md has the table): training 23.5 min
(transformer) / 13.8 min (LSTM); decoding the 2,000 test numbers 13 s greedy, 31 s beam 4 (transformer).
Args: transformer | lstm [,digits2words] [,smoke] (digits2words: the reverse direction, "342007" -> words, 80-byte
targets; smoke: 30 steps of the same model).
"""

import ml_collections

from jaxdl import config as config_lib

MODELS = {
    "transformer": dict(name="seq2seq", dim=128, depth=3, heads=4, mlp_dim=512, dropout=0.1),
    "lstm": dict(name="lstm_seq2seq", embed_dim=64, hidden=256, attention_dim=128, dropout=0.1),
}
LR = {"transformer": 1e-3, "lstm": 2e-3}


def get_config(arg: str = "transformer") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(arg, model=tuple(MODELS), digits2words=bool)
    reverse, smoke = a.digits2words, a.smoke
    c = config_lib.base()
    c.data.name = "numbers_digits2words" if reverse else "numbers_words2digits"
    c.data.batch_size = 64
    c.data.eval_batch_size = 500
    c.model = ml_collections.ConfigDict(MODELS[a.model])
    c.optim.name = "adamw"
    c.optim.lr = LR[a.model]
    c.optim.weight_decay = 0.01
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 100
    c.optim.clip_norm = 1.0
    c.train.steps = 1200
    c.train.log_every = 100
    c.train.eval_every = 400
    c.train.checkpoint_every = 400
    c.train.progress = False
    c.task.name = "seq2seq"
    c.evals.main = dict(kind="classify")  # teacher-forced token accuracy and loss, every eval_every
    tok = "13a" if reverse else "char"  # digit outputs are one word: BLEU over characters
    c.evals.greedy = dict(kind="translate", decoder="greedy", every=0, bleu_tokenize=tok)  # 0: at the end
    c.evals.beam4 = dict(kind="translate", decoder="beam", beam_size=4, alpha=0.6, every=0, bleu_tokenize=tok)
    if smoke:
        c.evals.greedy.limit = c.evals.beam4.limit = 100
    return config_lib.shrink_for_smoke(c) if smoke else c


def get_sweep(arg: str = ""):
    del arg
    return [
        {"_name": name, **{f"model.{k}": v for k, v in m.items()}, "optim.lr": LR[name]} for name, m in MODELS.items()
    ]
