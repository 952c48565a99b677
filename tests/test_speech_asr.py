"""A tiny end-to-end ASR run on real recorded speech: the `ctc` task trains `deepspeech` (and `conformer`) on the ten spoken digits
of the Asterisk prompts ("zero" … "nine") and its greedy CER on them falls far below the best trivial output (the
most frequent training character repeated any number of times)."""

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl.audio import ctc_decode
from jaxdl.audio.wav import read_wav
from jaxdl.data import asterisk
from jaxdl.evaluators.asr import error_rates
from jaxdl.models.speech import conformer, deepspeech
from jaxdl.tasks.ctc import Task


def _digits():
    try:
        items = asterisk.corpus()
    except FileNotFoundError as e:
        pytest.skip(f"the Asterisk prompts are not installed: {e} (`bash launch/setup.sh` as root)")
    digits = {f"digits/{d}.wav" for d in range(10)}
    return [(p, t) for p, t in items if p.endswith(tuple(digits))]


MODELS = {
    "deepspeech": (deepspeech.Model, dict(channels=8, hidden=48, layers=1), 3e-3, 150),
    "conformer": (conformer.Model, dict(channels=8, dim=32, heads=2, blocks=2, ff_mult=2, kernel=7), 3e-3, 150),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_tiny_ctc_run_beats_the_most_frequent_character_baseline(name):
    cls, kwargs, lr, steps = MODELS[name]
    items = _digits()
    assert len(items) == 10
    samples = 8000
    audio = [read_wav(p) for p, _ in items]
    assert max(len(a) for a in audio) <= samples
    x = np.zeros((10, samples), np.float32)
    for i, a in enumerate(audio):
        x[i, : len(a)] = a
    texts = [t for _, t in items]
    labels = np.full((10, 8), -1, np.int32)
    for i, t in enumerate(texts):
        labels[i, : len(t)] = asterisk.encode_text(t, items[i][0])
    batch = {"input": x, "input_length": np.array([len(a) for a in audio], np.int32), "label": labels}

    with nnx.use_eager_sharding(False):
        model = cls(
            input_shape=(samples,),
            num_classes=len(asterisk.VOCAB) + 1,
            **kwargs,
            dropout=0.0,
            specaugment=False,
            rngs=nnx.Rngs(0),
        )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    task, opt = Task(), optax.adam(lr)

    @jax.jit
    def step(params, opt_state):
        def f(p):
            return task.loss(nnx.merge(graphdef, p, rest), batch, nnx.Rngs(dropout=0))[0]

        loss, grads = jax.value_and_grad(f)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = opt.init(params)
    losses = []
    for _ in range(steps):
        params, opt_state, loss = step(params, opt_state)
        losses.append(float(loss))
    log_probs, frames = jax.jit(
        lambda p: nnx.merge(graphdef, p, rest).log_probs(batch["input"], batch["input_length"])
    )(params)
    hyps = [
        asterisk.decode_ids(ctc_decode.greedy(lp[:n]))
        for lp, n in zip(np.asarray(log_probs), np.asarray(frames), strict=True)
    ]
    cer = error_rates(texts, hyps)["cer"]

    chars = "".join(texts)
    top = max(set(chars), key=chars.count)
    baseline = min(error_rates(texts, [top * k] * len(texts))["cer"] for k in range(1, 8))
    assert baseline > 0.75
    assert losses[-1] < 0.3 * losses[0]
    assert cer < 0.5 * baseline, (cer, baseline, list(zip(texts, hyps, strict=True)))
