"""The `conformer` CTC recognizer and the speech front end it shares with `deepspeech`: output frames follow the
stated length arithmetic, and an utterance's logits do not change when its batch carries more padding (the
property length buckets and padded evaluation batches rely on). Its tiny end-to-end run on real speech is in
tests/test_speech_asr.py."""

import jax
import numpy as np
import pytest
from flax import nnx

from jaxdl.models.speech import conformer, deepspeech

TINY = {
    "conformer": dict(channels=4, dim=16, heads=2, blocks=2, ff_mult=2, kernel=5, dropout=0.0),
    "deepspeech": dict(channels=4, hidden=8, layers=1, dropout=0.0),
}


def _model(name: str, **kw):
    cls = {"conformer": conformer.Model, "deepspeech": deepspeech.Model}[name]
    with nnx.use_eager_sharding(False):
        return cls(input_shape=(4000,), num_classes=29, rngs=nnx.Rngs(0), **{**TINY[name], **kw})


def _waves(lengths, total, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((len(lengths), total), np.float32)
    for i, n in enumerate(lengths):
        x[i, :n] = 0.3 * rng.standard_normal(n)
    return x


@pytest.mark.parametrize("samples", [800, 879, 960, 1041, 1999])
def test_output_frames_follow_the_length_arithmetic(samples):
    model = _model("conformer")
    lengths = np.array([samples, samples // 2, 1], np.int32)
    graphdef, state = nnx.split(model)
    logits = jax.eval_shape(
        lambda s, x: nnx.merge(graphdef, s)(x, input_length=lengths), state, _waves(lengths, samples)
    )
    frames = -(-(1 + samples // 80) // 2)  # ceil(stft frames / 2): 10 ms frames, time stride 2
    assert logits.shape == (3, frames, 29) and logits.dtype == np.float32
    np.testing.assert_array_equal(model.output_lengths(lengths), [-(-(1 + n // 80) // 2) for n in lengths])


@pytest.mark.parametrize("name", ["conformer", "deepspeech"])
def test_logits_do_not_depend_on_the_padding_of_the_batch(name):
    model = _model(name)
    lengths = np.array([1523, 960, 411], np.int32)  # the first fills the shortest batch (20 STFT frames: even)
    graphdef, state = nnx.split(model)
    run = jax.jit(lambda s, x, n: nnx.merge(graphdef, s)(x, input_length=n))
    ref = np.asarray(run(state, _waves(lengths, 1523), lengths))
    frames = np.asarray(model.output_lengths(lengths))
    for total in (1600, 1681, 4000):  # 21, 22 and 51 STFT frames: both parities, and much more padding
        out = np.asarray(run(state, _waves(lengths, total), lengths))
        for i, f in enumerate(frames):
            np.testing.assert_allclose(out[i, :f], ref[i, :f], atol=2e-5, rtol=1e-5, err_msg=f"{name} row {i} {total}")


def test_real_frames_see_their_neighbours():
    """The padding test above would pass for a model that ignored context; here changing one utterance's audio
    near its end changes logits several frames earlier (attention and the convolutions mix frames)."""
    model = _model("conformer")
    lengths = np.array([1600], np.int32)
    x = _waves(lengths, 1600)
    y = x.copy()
    y[0, 1500:] *= -1.0
    graphdef, state = nnx.split(model)
    run = jax.jit(lambda s, v: nnx.merge(graphdef, s)(v, input_length=lengths))
    a, b = (np.asarray(run(state, v))[0] for v in (x, y))
    assert np.isfinite(a).all()
    assert np.abs(a[:5] - b[:5]).max() > 1e-4


def test_bad_configuration_and_input_errors_name_the_key():
    with pytest.raises(ValueError, match="kernel=4"):
        _model("conformer", kernel=4)
    with pytest.raises(ValueError, match="dim=18 is not divisible by config.model.heads=4"):
        _model("conformer", dim=18, heads=4)
    with pytest.raises(ValueError, match="input_shape"):
        with nnx.use_eager_sharding(False):
            conformer.Model(input_shape=(10, 40), num_classes=29, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"waveforms \[batch, samples\]"):
        _model("conformer")(np.zeros((2, 3, 800), np.float32))
