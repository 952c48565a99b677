"""WAV files ↔ float32 waveforms, with the checks a speech dataset needs (stdlib `wave`: 16-bit PCM is all the
offline corpora use, so no audio library is required).

`read_wav(path, sample_rate=8000)` → float32 [T] in [-1, 1); a file with another sample rate, more than one
channel, a sample width other than 16 bit, or no samples is a `ValueError` naming the file and what was found
(resampling silently would change what a model hears). `write_wav(path, x, sample_rate)` writes 16-bit mono,
clipping to [-1, 1].
"""

import os
import wave

import numpy as np


def read_wav(path: str, sample_rate: int = 8000) -> np.ndarray:
    """The samples of a 16-bit PCM mono WAV file at `sample_rate` Hz, float32 [T] scaled by 1/32768."""
    try:
        with wave.open(os.fspath(path), "rb") as w:
            rate, channels, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError) as e:
        raise ValueError(f"{path}: not a readable PCM WAV file ({e})") from e
    if rate != sample_rate:
        raise ValueError(f"{path}: sample rate {rate} Hz, expected {sample_rate} Hz (resample it first, e.g. sox)")
    if channels != 1:
        raise ValueError(f"{path}: {channels} channels, expected mono (e.g. `sox in.wav -c 1 out.wav`)")
    if width != 2:
        raise ValueError(f"{path}: {8 * width}-bit samples, expected 16-bit PCM")
    x = np.frombuffer(raw, dtype="<i2")
    if x.size == 0:
        raise ValueError(f"{path}: the file has no samples")
    return x.astype(np.float32) / 32768.0


def write_wav(path: str, x, sample_rate: int = 8000) -> None:
    """Writes float samples [T] (clipped to [-1, 1]) as a 16-bit PCM mono WAV file."""
    x = np.asarray(x, np.float32)
    if x.ndim != 1:
        raise ValueError(f"write_wav({path}): expected a 1-D waveform, got shape {x.shape}")
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(os.fspath(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
