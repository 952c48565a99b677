"""DeepSpeech2-style CTC acoustic model (Amodei et al. 2016), small: waveform → log-mel (on device) → per-utterance
mean/variance normalisation → SpecAugment (training) → two 2-D convolutions (the first subsamples time ×2 and
frequency ×2, the second frequency ×2) → bidirectional GRU/LSTM layers → per-frame character logits.

Inputs: waveforms float32 [batch, samples] zero-padded, `input_length` int32 [batch] real samples.
Outputs: logits float32 [batch, frames, num_classes] with frames = ceil((1 + samples // hop) / 2); `output_lengths`
maps sample counts to real output frames (what the CTC loss masks by). Frames past an utterance's end never touch
its real frames through the recurrences (seq_lengths) or the front end (fixed time padding, zeroed padding frames).

Why these choices: 10 ms log-mel frames subsampled to 20 ms keep ≥ 2.5 frames per character on this corpus (CTC
needs a frame per character plus a blank between repeats; ×4 subsampling would leave some prompts at 1.3);
per-utterance normalisation removes level differences between recordings without dataset statistics.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.dense import dense
from jaxdl.layers.dtypes import to_dtype
from jaxdl.models.speech._front_end import FrontEnd


class _BiRNN(nnx.Module):
    """[batch, time, din] → [batch, time, 2 * hidden]; positions at or past `lengths` do not affect real ones."""

    def __init__(self, din: int, hidden: int, cell: str, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
        make = {"gru": nnx.GRUCell, "lstm": nnx.OptimizedLSTMCell}[cell]
        self.fwd = nnx.RNN(make(din, hidden, **kw))
        self.bwd = nnx.RNN(make(din, hidden, **kw), reverse=True, keep_order=True)
        self.hidden, self.cell, self.carry_dtype = hidden, cell, to_dtype(dtype)

    def __call__(self, x, lengths):
        # An explicit zero carry: letting nnx.RNN draw it from its stored Rngs fails under jit (as in gru.py).
        zeros = jnp.zeros((x.shape[0], self.hidden), self.carry_dtype)
        carry = (zeros, zeros) if self.cell == "lstm" else zeros
        yf = self.fwd(x, initial_carry=carry, seq_lengths=lengths)
        yb = self.bwd(x, initial_carry=carry, seq_lengths=lengths)
        return jnp.concatenate([yf, yb], -1)


class Model(FrontEnd):
    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        sample_rate: int = 8000,
        n_fft: int = 256,
        hop: int = 80,
        n_mels: int = 40,
        channels: int = 16,
        hidden: int = 128,
        layers: int = 2,
        cell: str = "gru",
        dropout: float = 0.1,
        specaugment: bool = True,
        freq_width: int = 8,
        time_width: int = 20,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        """input_shape: (samples,); num_classes: CTC outputs incl. the blank (id 0). cell: "gru" | "lstm"."""
        if len(input_shape) != 1:
            raise ValueError(f"deepspeech expects waveforms [batch, samples]: input_shape {input_shape} is not 1-D")
        if cell not in ("gru", "lstm"):
            raise ValueError(f"config.model.cell={cell!r}: expected 'gru' or 'lstm'")
        if layers < 1 or hidden < 1 or channels < 1:
            raise ValueError(f"layers={layers}, hidden={hidden}, channels={channels} must all be >= 1")
        width = self.init_front_end(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop=hop,
            n_mels=n_mels,
            channels=channels,
            specaugment=specaugment,
            freq_width=freq_width,
            time_width=time_width,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.rnns = nnx.List(
            [
                _BiRNN(width if i == 0 else 2 * hidden, hidden, cell, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                for i in range(layers)
            ]
        )
        self.drop = nnx.Dropout(dropout)  # keys come from the call's rngs
        self.head = dense(2 * hidden, num_classes, ("mlp", "vocab"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        *,
        input_length: jax.Array | None = None,
        train: bool = False,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        if input_length is None:
            input_length = jnp.full((x.shape[0],), x.shape[-1], jnp.int32)
        h = self.front_end(x, input_length, train=train, rngs=rngs, name="deepspeech")
        lengths = self.output_lengths(input_length)
        for rnn in self.rnns:
            h = rnn(self.drop(h, deterministic=not train, rngs=rngs), lengths)
        return self.head(self.drop(h, deterministic=not train, rngs=rngs)).astype(jnp.float32)

    def log_probs(self, x: jax.Array, input_length: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(log-softmax float32 [batch, frames, num_classes], real output frames int32 [batch]) for decoding."""
        return jax.nn.log_softmax(self(x, input_length=input_length)), self.output_lengths(input_length)
