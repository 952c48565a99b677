"""μ-law companding and 256-way quantization of waveforms (ITU-T G.711's continuous law, as WaveNet uses it).

    compress(x) = sign(x) · ln(1 + μ|x|) / ln(1 + μ)            x in [-1, 1] → [-1, 1]
    expand(y)   = sign(y) · ((1 + μ)^|y| − 1) / μ               the inverse
    encode(x)   = ⌊(compress(x) + 1) / 2 · μ + ½⌋                int32 codes in [0, μ] (μ + 1 = 256 classes)
    decode(c)   = expand(2c / μ − 1)                             code → the amplitude at its bin centre

The quantization steps are uniform in the companded domain, so they are fine near silence and coarse for loud
samples (what speech's amplitude distribution wants). `bin_edges` gives the linear-amplitude boundaries between
neighbouring codes, so a continuous density (e.g. a linear predictor's Gaussian) can be turned into a
distribution over the same 256 codes a WaveNet predicts. A jax array in gives a jax array out (usable under
jit); anything else is computed with numpy (float32, like the jax path), so encoding hundreds of files of different
lengths on the host compiles nothing. The tests check both against the closed form above.
"""

import jax
import jax.numpy as jnp
import numpy as np

MU = 255  # 8-bit μ-law: 256 classes
SILENCE = (MU + 1) // 2  # the code of amplitude 0 (128 for μ = 255)


def _check_mu(mu: int) -> None:
    if int(mu) != mu or mu < 1:
        raise ValueError(f"μ-law: mu={mu!r} must be a positive integer (255 for 256 classes)")


def _xp(x):
    return jnp if isinstance(x, jax.Array) else np


def compress(x, mu: int = MU):
    """Companded amplitude float32 [...] in [-1, 1] of samples x float [...] in [-1, 1] (clipped first)."""
    _check_mu(mu)
    xp = _xp(x)
    x = xp.clip(xp.asarray(x, xp.float32), -1.0, 1.0)
    return xp.sign(x) * xp.log1p(xp.float32(mu) * xp.abs(x)) / xp.float32(np.log1p(mu))


def expand(y, mu: int = MU):
    """Linear amplitude float32 [...] of companded values y float [...] in [-1, 1] (the inverse of `compress`)."""
    _check_mu(mu)
    xp = _xp(y)
    y = xp.clip(xp.asarray(y, xp.float32), -1.0, 1.0)
    return xp.sign(y) * xp.expm1(xp.abs(y) * xp.float32(np.log1p(mu))) / xp.float32(mu)


def encode(x, mu: int = MU):
    """int32 codes [...] in [0, mu] of samples x float [...] in [-1, 1]: uniform bins of the companded amplitude."""
    xp = _xp(x)
    return xp.floor((compress(x, mu) + 1.0) / 2.0 * mu + 0.5).astype(xp.int32)


def decode(codes, mu: int = MU):
    """float32 amplitudes [...] of int codes [...] in [0, mu] (bin centres in the companded domain)."""
    xp = _xp(codes)
    return expand(xp.asarray(codes, xp.float32) * xp.float32(2.0 / mu) - xp.float32(1.0), mu)


def bin_edges(mu: int = MU) -> np.ndarray:
    """float64 [mu + 2]: linear amplitudes e with code c ⇔ e[c] ≤ x < e[c + 1] (e[0] = -inf, e[mu + 1] = +inf), the
    inner edges being the expanded midpoints between neighbouring code centres (computed in float64)."""
    _check_mu(mu)
    y = (2.0 * (np.arange(mu) + 0.5) / mu) - 1.0  # companded midpoints between codes c and c + 1
    inner = np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu
    return np.concatenate([[-np.inf], inner, [np.inf]])
