"""WaveNet on real recorded speech (Asterisk prompts, 8 kHz, one speaker): next-sample μ-law NLL on held-out files,
unconditioned or conditioned on log-mel frames (a vocoder). README section: experiments/speech/WAVENET.md.

One run:
  python -m jaxdl.main --config=experiments/speech/wavenet.py:uncond --workdir=/tmp/runs/wavenet_uncond
  python -m jaxdl.main --config=experiments/speech/wavenet.py:cond --workdir=/tmp/runs/wavenet_cond
Args: uncond | cond; seed=0; steps=N (default 1200); `,smoke` for 30 steps on 6 train / 6 test files.
Model: one stack of dilations 1…512 (10 gated layers, receptive field 1024 samples = 128 ms), 32 residual / 64 skip
channels, 256-way μ-law softmax; cond: 40 log-mel bands every 80 samples (10 ms), width-3 frame conv → 32 channels,
repeated to the sample rate. Adam 2e-3 (warmup 100, cosine), clip 1, batch 4 crops of 2000 samples (0.25 s).
Test NLL: every held-out file in 4000-sample windows, the first 1040 targets of each window context only.
Runtime on 2 heavily shared CPU cores: ~12-15 min per run (README has the measured one).
Expected (stated before training): both below the unigram code entropy by > 1.5 bits/sample and below the
fixed-variance order-16 LPC baseline by > 0.5 bit; cond below uncond (README: what was measured).
"""

import ml_collections

from jaxdl import config as config_lib


def get_config(arg: str = "uncond") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(arg, kind=("uncond", "cond"), seed=0, steps=1200)
    cond = a.kind == "cond"
    c = config_lib.base()
    c.seed = a.seed
    c.data.name = ""
    c.task = ml_collections.ConfigDict(
        dict(name="waveform", batch_size=4, crop=2000, conditioned=cond, n_mels=40, hop=80, max_files=0)
    )
    c.model = ml_collections.ConfigDict(
        dict(name="wavenet", layers=10, stacks=1, residual=32, skip=64, cond_channels=40 if cond else 0, hop=80)
    )
    c.evals = ml_collections.ConfigDict(dict(main=dict(kind="waveform_nll", window=4000, warmup=1040, batch_size=8)))
    c.mesh.data = 1
    c.optim.name = "adam"
    c.optim.lr = 2e-3
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 100
    c.optim.clip_norm = 1.0
    c.train.steps = a.steps
    c.train.log_every = 50
    c.train.eval_every = 0
    c.train.checkpoint_every = 500
    c.train.async_checkpoints = False
    c.train.progress = False
    if a.smoke:
        c = config_lib.shrink_for_smoke(c)
        c.task.max_files = 6
        c.task.crop = 800
        c.evals.main.update(window=2000, warmup=400, max_windows=4)
        c.train.eval_every = 0
    return c
