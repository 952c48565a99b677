"""Speech features on device: STFT power spectrum, log-mel, MFCC (jnp), and SpecAugment masks.

Conventions are librosa's (`librosa.feature.melspectrogram` / `mfcc` with their defaults: centred frames padded
with zeros, periodic Hann window, power 2, Slaney mel scale and area normalisation), so the numbers can be checked
against librosa (tests/test_speech_features.py: log-mel within 1e-3 absolute in log space, MFCC within 1e-2 dB).
The mel filterbank is written here in numpy rather than taken from `librosa.filters.mel` at run time: librosa
pulls numba in (seconds of import, a JIT compiler) for a 20-line constant; librosa stays the reference in tests.

Shapes: waveforms float32 `[..., samples]`; spectra `[..., frames, bins]` with
`frames = 1 + samples // hop` (`num_frames`), the frame axis before the feature axis as sequence models expect.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


def num_frames(num_samples, hop: int = 80):
    """Frames of a centred STFT of `num_samples` samples (int or int array)."""
    return 1 + num_samples // hop


def _hz_to_mel(f):
    """Slaney mel scale (librosa htk=False): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m):
    m = np.asarray(m, np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None):
    """Slaney-normalised triangular mel filters, float32 [n_fft // 2 + 1, n_mels] (librosa.filters.mel, transposed)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"mel range fmin={fmin} fmax={fmax} must satisfy 0 <= fmin < fmax <= {sample_rate / 2}")
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff, ramps = np.diff(mel_f), mel_f[:, None] - fft_freqs[None, :]
    lower, upper = -ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)) * (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return np.ascontiguousarray(weights.T.astype(np.float32))


def power_spectrogram(x: jax.Array, n_fft: int = 256, hop: int = 80) -> jax.Array:
    """|STFT|² of float32 [..., T] → float32 [..., 1 + T // hop, n_fft // 2 + 1] (centred, zero-padded, Hann)."""
    x = jnp.asarray(x, jnp.float32)
    if x.shape[-1] < 1:
        raise ValueError(f"power_spectrogram: empty waveform of shape {x.shape}")
    pad = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]
    xp = jnp.pad(x, pad)
    n = num_frames(x.shape[-1], hop)
    idx = np.arange(n)[:, None] * hop + np.arange(n_fft)[None, :]  # [frames, n_fft]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann (scipy fftbins=True)
    frames = xp[..., idx] * jnp.asarray(window, jnp.float32)
    spec = jnp.fft.rfft(frames, axis=-1)
    return jnp.real(spec) ** 2 + jnp.imag(spec) ** 2


def mel_spectrogram(
    x: jax.Array, sample_rate: int = 8000, n_fft: int = 256, hop: int = 80, n_mels: int = 40, fmin: float = 0.0
) -> jax.Array:
    """Mel power spectrogram float32 [..., frames, n_mels] (librosa.feature.melspectrogram, transposed)."""
    return power_spectrogram(x, n_fft, hop) @ jnp.asarray(mel_filterbank(sample_rate, n_fft, n_mels, fmin))


def log_mel(
    x: jax.Array,
    sample_rate: int = 8000,
    n_fft: int = 256,
    hop: int = 80,
    n_mels: int = 40,
    eps: float = 1e-6,
) -> jax.Array:
    """Log-mel features: log(mel power + eps), float32 [..., 1 + T // hop, n_mels] from waveforms float32 [..., T].

    Defaults suit 8 kHz telephone speech: 32 ms windows (n_fft 256), 10 ms hop, 40 mel bands over 0–4 kHz.
    """
    return jnp.log(mel_spectrogram(x, sample_rate, n_fft, hop, n_mels) + eps)


def mfcc(
    x: jax.Array,
    sample_rate: int = 8000,
    n_mfcc: int = 13,
    n_fft: int = 256,
    hop: int = 80,
    n_mels: int = 40,
    top_db: float | None = 80.0,
) -> jax.Array:
    """MFCC float32 [..., frames, n_mfcc]: orthonormal DCT-II of the mel power in dB (librosa.feature.mfcc).

    `top_db` clips each example's dB spectrogram at its maximum minus `top_db` (librosa's power_to_db); None skips.
    """
    mel = mel_spectrogram(x, sample_rate, n_fft, hop, n_mels)
    db = 10.0 * jnp.log10(jnp.maximum(mel, 1e-10))
    if top_db is not None:
        db = jnp.maximum(db, db.max(axis=(-2, -1), keepdims=True) - top_db)
    return jax.scipy.fft.dct(db, type=2, norm="ortho", axis=-1)[..., :n_mfcc]


def specaugment(
    key: jax.Array,
    feats: jax.Array,
    lengths: jax.Array | None = None,
    freq_masks: int = 2,
    freq_width: int = 8,
    time_masks: int = 2,
    time_width: int = 20,
) -> jax.Array:
    """SpecAugment (Park et al. 2019) without time warping: zero `freq_masks` bands of width U[0, freq_width] and
    `time_masks` spans of width U[0, time_width] frames in each example of feats float32 [batch, frames, bins].

    Time masks start inside the example's own `lengths` int32 [batch] (all frames when None), so padding is never
    the only thing masked. Features should be normalised to zero mean first, so a zero is an uninformative value.
    """
    if feats.ndim != 3:
        raise ValueError(f"specaugment expects feats [batch, frames, bins], got shape {feats.shape}")
    b, t, f = feats.shape
    lengths = jnp.full((b,), t, jnp.int32) if lengths is None else jnp.asarray(lengths, jnp.int32)
    kf, kt = jax.random.split(key)

    def spans(k, n, width, size, limit):  # -> bool [b, size], True where masked
        kw, ks = jax.random.split(k)
        w = jax.random.randint(kw, (b, n), 0, width + 1)
        start = (jax.random.uniform(ks, (b, n)) * jnp.maximum(limit[:, None] - w, 1)).astype(jnp.int32)
        pos = jnp.arange(size)[None, None, :]
        return ((pos >= start[..., None]) & (pos < (start + w)[..., None])).any(axis=1)

    fmask = spans(kf, freq_masks, freq_width, f, jnp.full((b,), f, jnp.int32))
    tmask = spans(kt, time_masks, time_width, t, lengths)
    keep = ~(fmask[:, None, :] | tmask[:, :, None])
    return jnp.where(keep, feats, 0.0)
