"""A small Conformer CTC recognizer (Gulati et al. 2020): the shared speech front end (log-mel → normalisation →
SpecAugment → 2-D conv subsampling to 20 ms frames, `jaxdl.models.speech._front_end`) → linear projection to
`dim` → `blocks` Conformer blocks → per-frame character logits.

Block (macaron): x + ½·FFN(LN x) → + MHSA(LN x) → + ConvModule(LN x) → + ½·FFN(LN x) → LN. The FFN is the
project's `jaxdl.layers.mlp.Mlp` (GELU, `ff_mult · dim` hidden; the paper uses Swish); MHSA is the project's
`jaxdl.layers.attention.Attention` with RoPE positions (instead of the paper's Transformer-XL relative
encoding: both make attention depend on relative offsets; RoPE needs no extra parameters) and the padding
`key_mask`; the conv module is pointwise (2·dim) → GLU → depthwise conv over time (`kernel` frames) → LayerNorm
(instead of BatchNorm, so nothing depends on the other utterances of the batch) → Swish → pointwise → dropout.

Inputs: waveforms float32 [batch, samples] zero padded, `input_length` int32 [batch] real samples. Output:
logits float32 [batch, frames, num_classes], frames = ceil((1 + samples // hop) / 2); `output_lengths` gives the
real frames. Padding invariance: real frames never read padded ones — attention masks padded keys, the depthwise
convolution sees padded frames as zeros, and the front end is padding invariant — so an utterance's logits do not
depend on the padded length of its batch (tests/test_conformer.py).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.attention import Attention
from jaxdl.layers.dense import dense
from jaxdl.layers.dtypes import to_dtype
from jaxdl.layers.mlp import Mlp
from jaxdl.layers.norm import make_norm
from jaxdl.models.speech._front_end import FrontEnd, time_mask


class _ConvModule(nnx.Module):
    """[batch, frames, dim] → [batch, frames, dim]; frames where `mask` is False are read as zeros."""

    def __init__(self, dim: int, kernel: int, dropout: float, *, dtype: str, param_dtype: str, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm = make_norm("layer", dim, **kw)
        self.up = dense(dim, 2 * dim, ("embed", "mlp"), **kw)
        self.depthwise = nnx.Conv(
            dim,
            dim,
            (kernel,),
            padding="SAME",  # stride 1, odd kernel: (kernel // 2) frames each side whatever the length
            feature_group_count=dim,
            dtype=to_dtype(dtype),
            param_dtype=to_dtype(param_dtype),
            rngs=rngs,
        )
        self.mid_norm = make_norm("layer", dim, **kw)
        self.down = dense(dim, dim, ("mlp", "embed"), **kw)
        self.drop = nnx.Dropout(dropout)

    def __call__(self, x, mask, *, train: bool, rngs: nnx.Rngs | None):
        h = jax.nn.glu(self.up(self.norm(x)), axis=-1)
        h = self.depthwise(jnp.where(mask[..., None], h, 0.0))
        h = self.down(jax.nn.silu(self.mid_norm(h)))
        return self.drop(h, deterministic=not train, rngs=rngs)


class _Block(nnx.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        ff_mult: int,
        kernel: int,
        dropout: float,
        attention_impl: str,
        *,
        dtype: str,
        param_dtype: str,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.ff1_norm, self.ff2_norm = make_norm("layer", dim, **kw), make_norm("layer", dim, **kw)
        self.ff1 = Mlp(dim, ff_mult * dim, dropout=dropout, **kw)
        self.ff2 = Mlp(dim, ff_mult * dim, dropout=dropout, **kw)
        self.attn_norm = make_norm("layer", dim, **kw)
        self.attn = Attention(dim, heads, rope=True, attention_impl=attention_impl, **kw)
        self.attn_drop = nnx.Dropout(dropout)
        self.conv = _ConvModule(dim, kernel, dropout, **kw)
        self.out_norm = make_norm("layer", dim, **kw)

    def __call__(self, x, mask, *, train: bool, rngs: nnx.Rngs | None):
        x = x + 0.5 * self.ff1(self.ff1_norm(x), train=train, rngs=rngs)
        a = self.attn(self.attn_norm(x), key_mask=mask, train=train, rngs=rngs)
        x = x + self.attn_drop(a, deterministic=not train, rngs=rngs)
        x = x + self.conv(x, mask, train=train, rngs=rngs)
        x = x + 0.5 * self.ff2(self.ff2_norm(x), train=train, rngs=rngs)
        return self.out_norm(x)


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
        dim: int = 96,
        heads: int = 4,
        blocks: int = 4,
        ff_mult: int = 4,
        kernel: int = 15,
        dropout: float = 0.1,
        specaugment: bool = True,
        freq_width: int = 8,
        time_width: int = 20,
        attention_impl: str = "xla",
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        """input_shape: (samples,); num_classes: CTC outputs incl. the blank (id 0). dim: model width (divisible
        by heads, head dim even for RoPE); kernel: odd depthwise-convolution width in 20 ms frames."""
        if len(input_shape) != 1:
            raise ValueError(f"conformer expects waveforms [batch, samples]: input_shape {input_shape} is not 1-D")
        if blocks < 1 or ff_mult < 1:
            raise ValueError(f"config.model.blocks={blocks} and ff_mult={ff_mult} must be >= 1")
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"config.model.kernel={kernel}: the depthwise convolution needs an odd width >= 1")
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
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.proj = dense(width, dim, ("mlp", "embed"), **kw)
        self.drop = nnx.Dropout(dropout)
        self.blocks = nnx.List(
            [_Block(dim, heads, ff_mult, kernel, dropout, attention_impl, **kw) for _ in range(blocks)]
        )
        self.head = dense(dim, num_classes, ("embed", "vocab"), **kw)

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
        h = self.front_end(x, input_length, train=train, rngs=rngs, name="conformer")
        mask = time_mask(self.output_lengths(input_length), h.shape[1])
        h = self.drop(self.proj(h), deterministic=not train, rngs=rngs)
        for block in self.blocks:
            h = block(h, mask, train=train, rngs=rngs)
        return self.head(h).astype(jnp.float32)

    def log_probs(self, x: jax.Array, input_length: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(log-softmax float32 [batch, frames, num_classes], real output frames int32 [batch]) for decoding."""
        return jax.nn.log_softmax(self(x, input_length=input_length)), self.output_lengths(input_length)
