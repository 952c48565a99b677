"""The speech front end the CTC recognizers share (`deepspeech`, `conformer`): waveform → log-mel (on device) →
per-utterance mean/variance normalisation → SpecAugment (training) → two 2-D convolutions that subsample time ×2
(20 ms frames) and frequency ×4 → LayerNorm over the flattened channels × bands.

Shapes: waveforms float32 [batch, samples] zero padded with `input_length` int32 [batch] real samples → float32
[batch, ceil((1 + samples // hop) / 2), channels * ceil(n_mels / 4)].

Padding invariance: an utterance's outputs must not depend on how much padding its batch carries (length
buckets, evaluation batches). So the waveform past `input_length` is zeroed before the STFT, normalised features
are zero on padding frames, the time axis is padded by fixed amounts (the kernel-5 stride-2 convolution's SAME
padding would move by one frame with the parity of the padded length), and the first convolution's output is
zeroed past the real frames before the second (kernel 3) reads it. For odd padded frame counts (e.g. 5 s = 501
frames) the explicit padding equals SAME, so checkpoints trained with SAME keep their parameters and layout.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.audio import features
from jaxdl.layers.dtypes import to_dtype


def time_mask(lengths: jax.Array, frames: int) -> jax.Array:
    """bool [batch, frames]: True on the first `lengths` int [batch] frames."""
    return jnp.arange(frames)[None, :] < lengths[:, None]


class FrontEnd(nnx.Module):
    """Mixin: `init_front_end(...)` builds conv1, conv2, norm (attribute names kept from the first deepspeech
    checkpoints); `front_end(x, input_length, train, rngs)` runs it; `output_lengths` maps samples to frames."""

    def init_front_end(
        self,
        *,
        sample_rate: int,
        n_fft: int,
        hop: int,
        n_mels: int,
        channels: int,
        specaugment: bool,
        freq_width: int,
        time_width: int,
        dtype: str,
        param_dtype: str,
        rngs: nnx.Rngs,
    ) -> int:
        """Builds the layers; returns the output width channels * ceil(n_mels / 4)."""
        if channels < 1 or n_mels < 1:
            raise ValueError(f"config.model.channels={channels} and n_mels={n_mels} must be >= 1")
        self.sample_rate, self.n_fft, self.hop, self.n_mels = sample_rate, n_fft, hop, n_mels
        self.specaugment, self.freq_width, self.time_width = specaugment, freq_width, time_width
        kw = dict(dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
        # Time: fixed (2, 2) and (1, 1) padding (see the module docstring); frequency (a fixed size): SAME's.
        f1 = ((5 - 2 + (n_mels % 2)) // 2, 5 - 2 + (n_mels % 2) - (5 - 2 + (n_mels % 2)) // 2)
        f_mid = (n_mels + 1) // 2
        f2 = ((3 - 2 + (f_mid % 2)) // 2, 3 - 2 + (f_mid % 2) - (3 - 2 + (f_mid % 2)) // 2)
        self.conv1 = nnx.Conv(1, channels, (5, 5), strides=(2, 2), padding=((2, 2), f1), **kw)
        self.conv2 = nnx.Conv(channels, channels, (3, 3), strides=(1, 2), padding=((1, 1), f2), **kw)
        width = channels * ((n_mels + 3) // 4)  # mel bins after two stride-2 convolutions: ceil(ceil(n / 2) / 2)
        self.norm = nnx.LayerNorm(width, **kw)
        return width

    def feature_lengths(self, num_samples: jax.Array) -> jax.Array:
        """Real log-mel frames of utterances of `num_samples` int [batch] samples."""
        return features.num_frames(jnp.asarray(num_samples, jnp.int32), self.hop)

    def output_lengths(self, num_samples: jax.Array) -> jax.Array:
        """Real output frames (int32 [batch]) of utterances of `num_samples` samples: the time stride is 2."""
        return (self.feature_lengths(num_samples) + 1) // 2

    def features(self, x: jax.Array, input_length: jax.Array) -> jax.Array:
        """Normalised log-mel float32 [batch, frames, n_mels], zero on padding frames."""
        x = jnp.where(jnp.arange(x.shape[1])[None, :] < input_length[:, None], x, 0.0)  # the last frames' windows
        feats = features.log_mel(x, self.sample_rate, self.n_fft, self.hop, self.n_mels)  # reach past the end
        n = self.feature_lengths(input_length)
        valid = time_mask(n, feats.shape[1])[..., None]
        count = jnp.maximum(n, 1)[:, None, None].astype(jnp.float32)
        mean = jnp.where(valid, feats, 0).sum(1, keepdims=True) / count
        var = jnp.where(valid, (feats - mean) ** 2, 0).sum(1, keepdims=True) / count
        return jnp.where(valid, (feats - mean) * jax.lax.rsqrt(var + 1e-5), 0.0)

    def front_end(
        self, x: jax.Array, input_length: jax.Array, *, train: bool, rngs: nnx.Rngs | None, name: str
    ) -> jax.Array:
        """Waveforms float32 [batch, samples] → float32 [batch, frames, width] (see the module docstring);
        `name` is the model's registry name for error messages."""
        if x.ndim != 2:
            raise ValueError(f"{name} expects waveforms [batch, samples], got shape {x.shape}")
        feats = self.features(x, input_length)
        if train and self.specaugment:
            if rngs is None:
                raise ValueError(f"{name}: training with specaugment=True needs rngs (a 'dropout' stream)")
            feats = features.specaugment(
                rngs.dropout(),
                feats,
                self.feature_lengths(input_length),
                freq_width=self.freq_width,
                time_width=self.time_width,
            )
        h = jax.nn.gelu(self.conv1(feats[..., None]))
        h = jnp.where(time_mask(self.output_lengths(input_length), h.shape[1])[..., None, None], h, 0.0)
        h = jax.nn.gelu(self.conv2(h))
        return self.norm(h.reshape(h.shape[0], h.shape[1], -1))
