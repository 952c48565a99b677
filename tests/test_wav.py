"""jaxdl.audio.wav: round trip against the stdlib-independent numpy reference, and the bad-file errors."""

import wave

import numpy as np
import pytest

from jaxdl.audio.wav import read_wav, write_wav


def test_round_trip_is_exact_on_16_bit_grid(tmp_path):
    x = np.random.default_rng(0).integers(-32768, 32767, 1000).astype(np.float32) / 32767.0
    write_wav(tmp_path / "a.wav", x, 8000)
    y = read_wav(tmp_path / "a.wav", 8000)
    raw = (tmp_path / "a.wav").read_bytes()[44:]  # canonical 44-byte header written by `wave`
    np.testing.assert_array_equal(np.frombuffer(raw, "<i2"), np.round(x * 32767).astype(np.int16))
    np.testing.assert_allclose(y, np.round(x * 32767) / 32768.0, rtol=0, atol=0)


def _write(path, rate=8000, channels=1, width=2, frames=b"\x00\x00" * 4):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(rate=16000), "sample rate 16000 Hz, expected 8000"),
        (dict(channels=2), "2 channels, expected mono"),
        (dict(width=1, frames=b"\x00" * 4), "8-bit samples"),
        (dict(frames=b""), "no samples"),
    ],
)
def test_bad_files_are_errors_naming_the_file(tmp_path, kw, msg):
    p = tmp_path / "bad.wav"
    _write(p, **kw)
    with pytest.raises(ValueError, match=msg) as e:
        read_wav(p, 8000)
    assert "bad.wav" in str(e.value)


def test_not_a_wav_names_the_file(tmp_path):
    p = tmp_path / "text.wav"
    p.write_text("hello")
    with pytest.raises(ValueError, match="text.wav: not a readable PCM WAV"):
        read_wav(p)
