"""Speech features and data: log-mel / MFCC in jnp against librosa, SpecAugment's masks, the Asterisk corpus
reader (transcript normalisation, licence, splits) and its bad-input errors (sample rate, empty transcript,
character outside the vocabulary), each naming the file or character."""

import gzip

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.audio import features
from jaxdl.audio.wav import write_wav
from jaxdl.data import asterisk

librosa = pytest.importorskip("librosa", reason="librosa is a project dependency: `pip install -e .`")


def _signal(seed=0, n=4321, sr=8000):
    """Speech-like test audio: two gliding tones + noise, float32 [n]."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * (300 + 400 * t) * t) + 0.2 * np.sin(2 * np.pi * 1700 * t) + 0.05 * rng.normal(size=n)
    return x.astype(np.float32)


@pytest.mark.parametrize("n_fft,hop,n_mels", [(256, 80, 40), (200, 100, 23)])
def test_log_mel_and_mfcc_match_librosa(n_fft, hop, n_mels):
    x = _signal()
    ref = librosa.feature.melspectrogram(y=x, sr=8000, n_fft=n_fft, hop_length=hop, n_mels=n_mels).T
    got = np.asarray(features.log_mel(x, 8000, n_fft, hop, n_mels))
    assert got.shape == ref.shape == (features.num_frames(len(x), hop), n_mels)
    np.testing.assert_allclose(got, np.log(ref + 1e-6), atol=1e-3)
    ref_mfcc = librosa.feature.mfcc(y=x, sr=8000, n_mfcc=13, n_fft=n_fft, hop_length=hop, n_mels=n_mels).T
    np.testing.assert_allclose(np.asarray(features.mfcc(x, 8000, 13, n_fft, hop, n_mels)), ref_mfcc, atol=1e-2)
    np.testing.assert_allclose(
        features.mel_filterbank(8000, n_fft, n_mels),
        librosa.filters.mel(sr=8000, n_fft=n_fft, n_mels=n_mels).T,
        rtol=1e-5,
        atol=1e-7,
    )


def test_features_batch_like_single_examples():
    xs = np.stack([_signal(0), _signal(1)])
    batched = np.asarray(features.log_mel(xs))
    for i in range(2):
        np.testing.assert_allclose(batched[i], np.asarray(features.log_mel(xs[i])), atol=1e-5)


def test_specaugment_masks_whole_bands_and_spans_inside_the_utterance():
    b, t, f = 6, 50, 20
    feats = jnp.asarray(np.random.default_rng(0).normal(size=(b, t, f)) + 10.0, jnp.float32)  # never 0 by chance
    lengths = jnp.array([50, 40, 30, 20, 10, 50])
    out = np.asarray(features.specaugment(jax.random.key(0), feats, lengths, 2, 5, 2, 7))
    zero = out == 0
    kept = ~zero
    np.testing.assert_array_equal(out[kept], np.asarray(feats)[kept])  # the rest unchanged
    for i in range(b):
        bands = zero[i].all(0)  # frequency bins zero at every frame
        frames = zero[i].all(1)
        # every zero lies in a masked band or a masked frame span
        assert (zero[i] == (bands[None, :] | frames[:, None])).all()
        assert bands.sum() <= 10 and frames.sum() <= 14
        assert not frames[int(lengths[i]) :].any() or frames[: int(lengths[i])].any()
        assert not frames[int(lengths[i]) + 7 :].any()  # spans start inside the real frames
    assert zero.any()
    again = np.asarray(features.specaugment(jax.random.key(0), feats, lengths, 2, 5, 2, 7))
    np.testing.assert_array_equal(out, again)
    with pytest.raises(ValueError, match="feats \\[batch, frames, bins\\]"):
        features.specaugment(jax.random.key(0), feats[0])


def test_transcript_normalisation():
    n = asterisk.normalize
    assert n("Please press 1 to mute, or 8 to exit.") == "please press one to mute or eight to exit"
    assert n("[ascending tones]") == "" and n("(3 seconds of silence)") == ""
    assert n('IAX (note: does not say "2")') == "iax"
    assert n("press * to toggle pause, press # to enter") == "press star to toggle pause press pound to enter"
    assert n("A.M.") == "a m" and n("Call-Forward on No Answer.") == "call forward on no answer"
    assert n("That agent's \"don't call\" menu") == "that agent's don't call menu"
    assert n("dial 1234 now") == "dial 1234 now"  # a multi-digit number stays (corpus() drops it)


def _tiny_corpus(folder, texts: dict[str, str], rate=8000, stereo=()):
    """A corpus folder like the Debian one: `<name>.wav` files and a gzipped `name: text` list."""
    root = folder / "sounds"
    root.mkdir(parents=True)
    for name in texts:
        path = root / f"{name}.wav"
        if name in stereo:
            import wave

            with wave.open(str(path), "wb") as w:
                w.setnchannels(2)
                w.setsampwidth(2)
                w.setframerate(rate)
                w.writeframes(np.zeros(800, "<i2").tobytes())
        else:
            write_wav(str(path), _signal(n=1600), rate)
    tx = folder / "core-sounds-en.txt.gz"
    with gzip.open(tx, "wt") as f:
        f.write("; header\n" + "".join(f"{k}: {v}\n" for k, v in texts.items()))
    return str(root), str(tx)


def test_corpus_reader_and_bad_input_errors_name_the_file_or_character(tmp_path):
    root, tx = _tiny_corpus(tmp_path / "ok", {"a": "Hello there.", "b": "Press 1 now", "beep": "[beep]"})
    kept, dropped = asterisk.corpus(root, transcripts=tx, with_dropped=True)
    assert [t for _, t in kept] == ["hello there", "press one now"]
    assert dropped[0][0].endswith("beep.wav") and dropped[0][2] == "no speech in the transcript"
    rows = asterisk.examples(root, transcripts=tx)
    row = (rows["train"] + rows["test"])[0]
    assert row["num_samples"] == 1600 and asterisk.decode_ids(row["label"][: row["label_length"]]) == "hello there"

    with pytest.raises(ValueError, match="x.wav: empty transcript"):
        asterisk.encode_text("", "x.wav")
    with pytest.raises(ValueError, match=r"y.wav: character\(s\) \['é'\] are not in the vocabulary"):
        asterisk.encode_text("café", "y.wav")
    np.testing.assert_array_equal(asterisk.encode_text("ab c"), [3, 4, 1, 5])
    assert asterisk.decode_ids(asterisk.encode_text("it's ok")) == "it's ok"

    root16, tx16 = _tiny_corpus(tmp_path / "r16", {"slow": "hello"}, rate=16000)
    with pytest.raises(ValueError, match="slow.wav: sample rate 16000 Hz, expected 8000"):
        asterisk.examples(root16, transcripts=tx16)
    root2, tx2 = _tiny_corpus(tmp_path / "st", {"two": "hi there"}, stereo=("two",))
    with pytest.raises(ValueError, match="two.wav: 2 channels, expected mono"):
        asterisk.examples(root2, transcripts=tx2)
    root3, tx3 = _tiny_corpus(tmp_path / "nt", {"x": "hi"})
    with gzip.open(tx3, "wt") as f:
        f.write("y: hello\n")
    with pytest.raises(ValueError, match="x.wav: no transcript named 'x'"):
        asterisk.corpus(root3, transcripts=tx3)
    with pytest.raises(FileNotFoundError, match="apt-get install -y asterisk-core-sounds-en-wav"):
        asterisk.corpus(str(tmp_path / "missing"), transcripts=tx)


def _require_asterisk():
    try:
        asterisk._paths(None, None)
    except FileNotFoundError as e:
        pytest.skip(f"the Asterisk prompts are not installed: {e} (`bash launch/setup.sh` as root)")


def test_real_corpus_licence_and_held_out_prompts():
    _require_asterisk()
    items = asterisk.corpus()
    assert len(items) == 547 and all(set(t) <= set(asterisk.VOCAB) and t for _, t in items)
    with open("/usr/share/doc/asterisk-core-sounds-en-wav/copyright") as f:
        text = f.read()
    assert "Allison Smith" in text and "CC-BY-SA-3.0" in text
    split = asterisk.split_names(items)
    train = {items[i][1] for i in split["train"]}
    test = {items[i][1] for i in split["test"]}
    assert not train & test and len(split["train"]) + len(split["test"]) == len(items)
    assert all(" " in t for t in test) and len(split["test"]) == 46
