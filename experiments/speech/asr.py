"""CTC speech recognition on real recorded speech: a small DeepSpeech2-style model (log-mel on device → 2 convs →
2 BiGRU layers → characters) on the Asterisk English prompts (jaxdl.data.asterisk: one speaker, 8 kHz; test =
sentence prompts never heard in training), scored by CER/WER with greedy, beam and beam + character 5-gram LM.

  python -m jaxdl.main --config=experiments/speech/asr.py --workdir=/tmp/runs/asr
  python experiments/speech/asr_study.py --workdir=/tmp/runs/asr        # re-scores the checkpoint, all decoders
Args: `steps=N` (default 1000), `hidden=N` (128), `conformer` (the Conformer encoder instead of the BiGRUs:
`conformer` model, dim 64, 4 heads, 4 blocks, kernel 15; same front end, data, optimizer and steps; batches
padded to length buckets of 2 / 3.5 / 5 s instead of all to 5 s), `,smoke` (30 steps).

  python -m jaxdl.main --config=experiments/speech/asr.py:conformer --workdir=/tmp/runs/asr_conformer
Setup: Adam 1e-3, min(100, steps / 10) warmup steps, cosine to 0.05x, clip 5, batch 16, SpecAugment, dropout 0.1.
Runtime: 29-38 min measured on 2 CPU cores shared with other jobs (load 13-20). Held-out CER,
stated before training: ~50 % greedy; measured (README.md, n = 2): greedy 50.1, beam 45.7, beam + LM 35.8 %.
`:conformer`: 35.5 min measured (load 15-18); stated before training ~55 % greedy CER; measured (seed 0, n = 1):
greedy 58.9, beam 54.1, beam + LM 46.2 %.
"""

import ml_collections

from jaxdl import config as config_lib


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(arg, steps=1000, hidden=128, conformer=bool)
    c = config_lib.base()
    c.data.name = "asterisk_speech"
    c.data.batch_size = 16
    c.data.eval_batch_size = 16
    c.model = ml_collections.ConfigDict(
        dict(name="deepspeech", hidden=a.hidden, layers=2, channels=16, cell="gru", dropout=0.1, specaugment=True)
    )
    if a.conformer:
        c.model = ml_collections.ConfigDict(
            dict(name="conformer", dim=64, heads=4, blocks=4, ff_mult=4, kernel=15, dropout=0.1, specaugment=True)
        )
        c.data.buckets = (16000, 28000, 40000)  # 2 / 3.5 / 5 s: batches of short prompts cost less
    c.task = ml_collections.ConfigDict(dict(name="ctc"))
    c.evals.main = dict(kind="asr", decoder="greedy")
    c.mesh.data = 1
    c.optim.name = "adam"
    c.optim.lr = 1e-3
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = min(100, a.steps // 10)
    c.optim.end_lr_factor = 0.05
    c.optim.clip_norm = 5.0
    c.train.steps = a.steps
    c.train.log_every = 50
    c.train.eval_every = 250
    c.train.checkpoint_every = 250
    c.train.async_checkpoints = False
    c.train.progress = False
    return config_lib.shrink_for_smoke(c) if a.smoke else c
