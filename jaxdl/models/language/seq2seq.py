"""Transformer encoder-decoder (Vaswani et al. 2017, pre-norm) with a KV cache for generation.

source int32 [batch, S] (padded at the end with `pad_id`), keyword `target_in` int32 [batch, T] (BOS then the target
shifted right) -> logits float32 [batch, T, vocab] (vocab = `num_classes`; what `jaxdl.data.translation` feeds).

- Encoder: token embedding * sqrt(dim) + positions (sinusoidal, or a learned table of `max_len` rows) -> dropout ->
  `depth` pre-norm blocks (self-attention + GELU MLP) -> norm. Padded source keys are masked through segment ids
  (real tokens 1, padding 0) of `kernels.attention.api.attention`, so padding never reaches a real position.
- Decoder: the same (shared) embedding + positions -> `decoder_depth` pre-norm blocks (causal self-attention,
  cross-attention to the encoder output with the padded source keys masked, MLP) -> norm -> logits (the transposed
  embedding when `tie_embeddings`). Each stack's layers are created with `nnx.vmap` and run with `nnx.scan`.

Generation (the `jaxdl.decode` step-function interface, cache rows on axis `CACHE_BATCH_AXIS` = 1):
`init_cache(source, max_len)` runs the encoder once and returns {"k", "v": [layers, batch, max_len, heads,
head_dim] (decoder self-attention, empty), "ck", "cv": [layers, batch, S, heads, head_dim] (cross-attention keys
and values of the encoder output), "src_seg": int32 [1, batch, S] (1 = real source token), "index": int32 []};
`decode_step(tokens [batch, t], cache) -> (logits [batch, t, vocab], cache)`, whose logits equal the teacher-forced
forward's. Any model with `init_cache(source, max_len)`, `decode_step`, `CACHE_BATCH_AXIS` and `pad_id`/`bos_id`/
`eos_id` (e.g. `jaxdl.models.language.lstm_seq2seq`) works with `jaxdl.decode.greedy_decode` / `beam_decode` and the
`translate` evaluator (`jaxdl.evaluators.translate`).
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.attention import Attention
from jaxdl.layers.dtypes import to_dtype
from jaxdl.layers.mlp import Mlp
from jaxdl.layers.norm import make_norm
from jaxdl.parallel.rules import constrain

POSITIONS = ("sinusoidal", "learned")
CACHE_BATCH_AXIS = 1
# jaxdl.data.translation's specials (bytes 0..255, then PAD, BOS, EOS)
PAD_ID, BOS_ID, EOS_ID = 256, 257, 258


def sinusoidal(positions: jax.Array, dim: int) -> jax.Array:
    """positions int [n] -> float32 [n, dim]: sin on the first half of the features, cos on the second."""
    half = dim // 2
    freq = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / max(half - 1, 1))
    angle = positions.astype(jnp.float32)[:, None] * freq[None]
    out = jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)
    return jnp.pad(out, ((0, 0), (0, dim - 2 * half)))


class EncoderBlock(nnx.Module):
    def __init__(self, dim, heads, mlp_dim, dropout, impl, *, dtype, param_dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm1, self.norm2 = (make_norm("layer", dim, axes=("embed",), **kw) for _ in range(2))
        self.attn = Attention(dim, heads, attention_impl=impl, **kw)
        self.mlp = Mlp(dim, mlp_dim, dropout=dropout, **kw)
        self.drop = nnx.Dropout(dropout)

    def __call__(self, x, seg, train, rngs):
        """x [batch, S, embed], seg int32 [batch, S] (1 real, 0 padding: padded queries see only padding)."""
        a = self.attn(self.norm1(x), q_segment_ids=seg, kv_segment_ids=seg)
        x = x + self.drop(a, deterministic=not train, rngs=rngs)
        x = x + self.mlp(self.norm2(x), train=train, rngs=rngs)
        return constrain(x, ("batch", "act_length", "embed"))


class DecoderBlock(nnx.Module):
    def __init__(self, dim, heads, mlp_dim, dropout, impl, *, dtype, param_dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm1, self.norm2, self.norm3 = (make_norm("layer", dim, axes=("embed",), **kw) for _ in range(3))
        self.self_attn = Attention(dim, heads, causal=True, attention_impl=impl, **kw)
        self.cross = Attention(dim, heads, attention_impl=impl, **kw)
        self.mlp = Mlp(dim, mlp_dim, dropout=dropout, **kw)
        self.drop = nnx.Dropout(dropout)

    def __call__(self, x, positions, memory, src_seg, train, rngs):
        """x [batch, T, embed] at positions [T]; memory [batch, S, embed] (encoder output); src_seg [batch, S]."""
        drop = lambda y: self.drop(y, deterministic=not train, rngs=rngs)
        x = x + drop(self.self_attn(self.norm1(x), positions=positions))
        x = x + drop(self.cross(self.norm2(x), memory, key_mask=src_seg == 1))
        x = x + self.mlp(self.norm3(x), train=train, rngs=rngs)
        return constrain(x, ("batch", "act_length", "embed"))

    def cached(self, x, positions, index, k_cache, v_cache, ck, cv, src_seg):
        """t new tokens (no dropout): -> (x, k_cache, v_cache). The cross-attention runs the xla op (t is ~1)."""
        a, k_cache, v_cache = self.self_attn.cached(self.norm1(x), positions, index, k_cache, v_cache)
        x = x + a
        x = x + self.cross(self.norm2(x), kv=(ck, cv), key_mask=src_seg == 1, impl="xla")
        return x + self.mlp(self.norm3(x), train=False, rngs=None), k_cache, v_cache


def _stack(block_cls, depth, args, kw, rngs):
    @nnx.split_rngs(splits=depth)
    @nnx.vmap(in_axes=(0,), out_axes=0, axis_size=depth, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def make(rngs):
        return block_cls(*args, rngs=rngs, **kw)

    return make(rngs)


_SCAN = dict(transform_metadata={nnx.PARTITION_NAME: "layers"})


class Model(nnx.Module):
    """source [batch, S], target_in [batch, T] -> logits [batch, T, vocab] (float32); vocab = num_classes."""

    CACHE_BATCH_AXIS = CACHE_BATCH_AXIS

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        depth: int = 3,
        decoder_depth: int = 0,
        dim: int = 128,
        heads: int = 4,
        mlp_dim: int = 0,
        dropout: float = 0.0,
        positions: str = "sinusoidal",
        max_len: int = 128,
        tie_embeddings: bool = True,
        pad_id: int = PAD_ID,
        bos_id: int = BOS_ID,
        eos_id: int = EOS_ID,
        dtype: str = "float32",
        param_dtype: str = "float32",
        attention_impl: str = "xla",
        rngs: nnx.Rngs,
    ):
        """depth: encoder layers; decoder_depth 0 = depth. mlp_dim 0 = 4 * dim. positions: "sinusoidal" or
        "learned" (tables of max_len rows for each side, which then bound S and T). tie_embeddings: the output
        projection is the transposed token embedding (shared by source and target in any case). pad/bos/eos ids:
        the specials of the token vocabulary (jaxdl.data.translation's by default). attention_impl picks the
        kernel of the full-sequence attention (kernels.attention.api; the cudnn path has no segment ids)."""
        if len(input_shape) != 1:
            raise ValueError(f"seq2seq: input_shape must be (source_len,) of token ids, got {tuple(input_shape)}")
        if positions not in POSITIONS:
            raise ValueError(f"config.model.positions={positions!r}: choose one of {POSITIONS}")
        for name, value in (("pad_id", pad_id), ("bos_id", bos_id), ("eos_id", eos_id)):
            if not 0 <= value < num_classes:
                raise ValueError(f"config.model.{name}={value} is outside the vocabulary [0, {num_classes})")
        if positions == "learned" and input_shape[0] > max_len:
            raise ValueError(f"config.model.max_len={max_len} is shorter than the source length {input_shape[0]}")
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        self.vocab, self.dim, self.dropout, self.positions, self.max_len = num_classes, dim, dropout, positions, max_len
        self.depth, self.decoder_depth, self.tie = depth, decoder_depth or depth, tie_embeddings
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.heads, self.head_dim, self.dtype = heads, dim // heads, to_dtype(dtype)
        emb_init = nnx.with_partitioning(nnx.initializers.normal(dim**-0.5), ("vocab", "embed"))
        self.embed = nnx.Embed(
            num_classes,
            dim,
            embedding_init=emb_init,
            dtype=to_dtype(dtype),
            param_dtype=to_dtype(param_dtype),
            rngs=rngs,
        )
        if positions == "learned":
            pos_init = nnx.with_partitioning(nnx.initializers.normal(0.02), ("length", "embed"))
            self.src_pos = nnx.Param(pos_init(rngs.params(), (max_len, dim), to_dtype(param_dtype)))
            self.tgt_pos = nnx.Param(pos_init(rngs.params(), (max_len, dim), to_dtype(param_dtype)))
        self.drop = nnx.Dropout(dropout)
        args = (dim, heads, mlp_dim or 4 * dim, dropout, attention_impl)
        self.encoder = _stack(EncoderBlock, depth, args, kw, rngs)
        self.decoder = _stack(DecoderBlock, self.decoder_depth, args, kw, rngs)
        self.enc_norm, self.dec_norm = (make_norm("layer", dim, axes=("embed",), rngs=rngs, **kw) for _ in range(2))
        if not tie_embeddings:
            self.head = nnx.Linear(
                dim,
                num_classes,
                dtype=to_dtype(dtype),
                param_dtype=to_dtype(param_dtype),
                rngs=rngs,
                kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ("embed", "vocab")),
                bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("vocab",)),
            )

    # ----------------------------------------------------------------------------------------------- pieces
    def _embed(self, tokens: jax.Array, positions: jax.Array, table: str) -> jax.Array:
        if tokens.ndim != 2:
            raise ValueError(f"seq2seq: tokens must be [batch, length], got shape {tuple(tokens.shape)}")
        h = self.embed(tokens.astype(jnp.int32)) * math.sqrt(self.dim)
        if self.positions == "learned":
            return h + getattr(self, table)[...][positions].astype(h.dtype)
        return h + sinusoidal(positions, self.dim).astype(h.dtype)

    def _check_length(self, length: int, what: str) -> None:
        if self.positions == "learned" and length > self.max_len:
            raise ValueError(f"seq2seq: {what} length {length} exceeds config.model.max_len={self.max_len}")

    def _logits(self, h: jax.Array) -> jax.Array:
        h = self.dec_norm(h)
        return (self.embed.attend(h) if self.tie else self.head(h)).astype(jnp.float32)

    def encode(
        self, source: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """source [batch, S] -> (memory [batch, S, embed], src_seg int32 [batch, S]: 1 = real token, 0 = padding)."""
        self._check_length(source.shape[-1], "source")
        seg = (source != self.pad_id).astype(jnp.int32)
        h = self.drop(self._embed(source, jnp.arange(source.shape[1]), "src_pos"), deterministic=not train, rngs=rngs)
        keys = self._dropout_keys(train, rngs, self.depth)

        @nnx.scan(in_axes=(nnx.Carry, 0, 0), out_axes=nnx.Carry, **_SCAN)
        def run(h, block, key):
            return block(h, seg, train, nnx.Rngs(dropout=key))

        return self.enc_norm(run(constrain(h, ("batch", "act_length", "embed")), self.encoder, keys)), seg

    def _dropout_keys(self, train, rngs, n):
        if train and self.dropout > 0:
            if rngs is None:
                raise ValueError("seq2seq: train=True with dropout > 0 needs rngs (nnx.Rngs(dropout=key))")
            return jax.random.split(rngs.dropout(), n)
        return jax.random.split(jax.random.key(0), n)  # unused: dropout is off

    def __call__(
        self, x: jax.Array, *, target_in: jax.Array, train: bool = False, rngs: nnx.Rngs | None = None
    ) -> jax.Array:
        """x: source [batch, S]; target_in: decoder input [batch, T] -> logits [batch, T, vocab] (teacher forcing)."""
        if target_in.ndim != 2 or target_in.shape[0] != x.shape[0]:
            raise ValueError(f"seq2seq: target_in must be [batch={x.shape[0]}, T], got {tuple(target_in.shape)}")
        self._check_length(target_in.shape[1], "target")
        memory, seg = self.encode(x, train=train, rngs=rngs)
        positions = jnp.arange(target_in.shape[1], dtype=jnp.int32)
        h = self.drop(self._embed(target_in, positions, "tgt_pos"), deterministic=not train, rngs=rngs)
        keys = self._dropout_keys(train, rngs, self.decoder_depth)

        @nnx.scan(in_axes=(nnx.Carry, 0, 0), out_axes=nnx.Carry, **_SCAN)
        def run(h, block, key):
            return block(h, positions, memory, seg, train, nnx.Rngs(dropout=key))

        return self._logits(run(h, self.decoder, keys))

    # ----------------------------------------------------------------------------------------------- KV cache
    def init_cache(self, source: jax.Array, max_len: int) -> dict:
        """Runs the encoder on source [batch, S]; room for `max_len` decoder positions (see the module docstring)."""
        self._check_length(max_len, "decode")
        memory, seg = self.encode(source)

        @nnx.vmap(in_axes=(0, None), out_axes=0, **_SCAN)
        def cross_kv(block, memory):
            return block.cross.project_kv(memory)

        ck, cv = cross_kv(self.decoder, memory)
        zeros = jnp.zeros((self.decoder_depth, source.shape[0], max_len, self.heads, self.head_dim), self.dtype)
        return {"k": zeros, "v": zeros, "ck": ck, "cv": cv, "src_seg": seg[None], "index": jnp.zeros((), jnp.int32)}

    def decode_step(self, tokens: jax.Array, cache: dict) -> tuple[jax.Array, dict]:
        """tokens [batch, t] at positions index .. index+t-1 -> (logits [batch, t, vocab] float32, updated cache)."""
        if cache["k"].shape[1] != tokens.shape[0]:
            raise ValueError(f"decode_step: tokens have {tokens.shape[0]} rows, the cache {cache['k'].shape[1]}")
        index, seg = cache["index"], cache["src_seg"][0]
        positions = index + jnp.arange(tokens.shape[1], dtype=jnp.int32)
        h = self._embed(tokens, positions, "tgt_pos")

        @nnx.scan(in_axes=(nnx.Carry, 0, 0, 0, 0, 0), out_axes=(nnx.Carry, 0, 0), **_SCAN)
        def run(h, block, k, v, ck, cv):
            return block.cached(h, positions, index, k, v, ck, cv, seg)

        h, k, v = run(h, self.decoder, cache["k"], cache["v"], cache["ck"], cache["cv"])
        return self._logits(h), cache | {"k": k, "v": v, "index": index + tokens.shape[1]}
