"""LSTM encoder-decoder with additive (Bahdanau et al. 2015) attention, for sequence-to-sequence tasks.

source int32 [batch, S] (padded at the end with `pad_id`; at least one real token per row), keyword `target_in`
int32 [batch, T] (BOS then the target shifted right) -> logits float32 [batch, T, vocab] (vocab = `num_classes`).

- Encoder: token embedding -> `encoder_layers` bidirectional LSTM layers (`nnx.RNN` over `nnx.OptimizedLSTMCell`,
  `hidden` units per direction). Both directions get the source lengths, so the backward one starts at the last
  real token and padding never reaches a real position. The decoder's initial (c, h) is
  tanh(W [forward final; backward final]) of each.
- Attention: score_j = vᵀ tanh(W_q s + W_k m_j) of the decoder state s against every encoder output m_j,
  softmax over the real source positions (padding gets weight exactly 0), context = Σ_j a_j m_j.
- Decoder step t: context from the previous state s_{t-1}; (c, h) = LSTM((c, h), [embed(y_{t-1}); context]);
  logits = W_v tanh(W_o [h; context]). Training runs it with teacher forcing (a `lax.scan` over T).

Generation (the `jaxdl.decode` step-function interface, cache rows on axis `CACHE_BATCH_AXIS` = 0):
`init_cache(source, max_len)` runs the encoder and returns {"c", "h": [batch, hidden] (decoder state), "keys":
[batch, S, attention_dim] (W_k m), "memory": [batch, S, 2 * hidden], "valid": bool [batch, S]} (no length bound:
`max_len` is accepted for the shared interface); `decode_step(tokens [batch, t], cache)` feeds t tokens. Use
`jaxdl.decode.greedy_decode` / `beam_decode` and the `translate` evaluator.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.dense import dense
from jaxdl.layers.dtypes import to_dtype
from jaxdl.models.language.seq2seq import BOS_ID, EOS_ID, PAD_ID

CACHE_BATCH_AXIS = 0


class BahdanauAttention(nnx.Module):
    """Additive attention of a query [batch, query_dim] over memory [batch, S, memory_dim]."""

    def __init__(self, query_dim: int, memory_dim: int, dim: int, *, dtype: str, param_dtype: str, rngs: nnx.Rngs):
        kw = dict(dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), use_bias=False, rngs=rngs)
        self.wq = nnx.Linear(query_dim, dim, **kw)
        self.wk = nnx.Linear(memory_dim, dim, **kw)
        self.v = nnx.Param(nnx.initializers.normal(dim**-0.5)(rngs.params(), (dim,), to_dtype(param_dtype)))

    def keys(self, memory: jax.Array) -> jax.Array:
        """memory [batch, S, memory_dim] -> W_k memory [batch, S, dim] (computed once per source)."""
        return self.wk(memory)

    def __call__(self, query, keys, memory, valid) -> tuple[jax.Array, jax.Array]:
        """query [batch, query_dim], keys [batch, S, dim], memory [batch, S, memory_dim], valid bool [batch, S] ->
        (context [batch, memory_dim], weights float32 [batch, S]: a softmax over the valid positions, 0 elsewhere)."""
        scores = jnp.tanh(keys + self.wq(query)[:, None]) @ self.v[...].astype(keys.dtype)
        scores = jnp.where(valid, scores.astype(jnp.float32), -1e9)  # finite: a row of padding only gives no NaN
        weights = jax.nn.softmax(scores, axis=-1) * valid
        context = jnp.einsum("bs,bsd->bd", weights.astype(memory.dtype), memory)
        return context, weights


class Decoder(nnx.Module):
    """One decoder step: attention from the previous state, LSTM cell, output layer."""

    def __init__(self, embed_dim, hidden, memory_dim, attention_dim, vocab, *, dtype, param_dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.attention = BahdanauAttention(hidden, memory_dim, attention_dim, **kw)
        self.cell = nnx.OptimizedLSTMCell(
            embed_dim + memory_dim, hidden, dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs
        )
        self.out = dense(hidden + memory_dim, hidden, ("mlp", "embed"), **kw)
        self.vocab = dense(hidden, vocab, ("embed", "vocab"), **kw)

    def step(self, carry, emb, keys, memory, valid):
        """carry (c, h) [batch, hidden] each, emb [batch, embed] (the previous token) -> (carry, (features
        [batch, hidden + memory_dim], weights [batch, S]))."""
        context, weights = self.attention(carry[1], keys, memory, valid)
        carry, h = self.cell(carry, jnp.concatenate([emb, context.astype(emb.dtype)], -1))
        return carry, (jnp.concatenate([h, context.astype(h.dtype)], -1), weights)

    def run(self, carry, embs, keys, memory, valid):
        """Teacher forcing: embs [batch, T, embed] -> (carry, features [batch, T, ...], weights [batch, T, S])."""
        graphdef, state = nnx.split(self)

        def body(carry, emb):
            return nnx.merge(graphdef, state).step(carry, emb, keys, memory, valid)

        carry, (feats, weights) = jax.lax.scan(body, carry, jnp.swapaxes(embs, 0, 1))
        return carry, jnp.swapaxes(feats, 0, 1), jnp.swapaxes(weights, 0, 1)

    def logits(self, feats: jax.Array) -> jax.Array:
        return self.vocab(jnp.tanh(self.out(feats))).astype(jnp.float32)


class Model(nnx.Module):
    """source [batch, S], target_in [batch, T] -> logits [batch, T, vocab] (float32); vocab = num_classes."""

    CACHE_BATCH_AXIS = CACHE_BATCH_AXIS

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        embed_dim: int = 64,
        hidden: int = 128,
        attention_dim: int = 128,
        encoder_layers: int = 1,
        dropout: float = 0.0,
        pad_id: int = PAD_ID,
        bos_id: int = BOS_ID,
        eos_id: int = EOS_ID,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        """hidden: LSTM units (per encoder direction, and the decoder's). dropout: on the embeddings and the
        features before the output layer. pad/bos/eos ids: the vocabulary's specials (jaxdl.data.translation's)."""
        if len(input_shape) != 1:
            raise ValueError(f"lstm_seq2seq: input_shape must be (source_len,) of token ids, got {tuple(input_shape)}")
        if encoder_layers < 1:
            raise ValueError(f"config.model.encoder_layers={encoder_layers}: expected >= 1")
        for name, value in (("pad_id", pad_id), ("bos_id", bos_id), ("eos_id", eos_id)):
            if not 0 <= value < num_classes:
                raise ValueError(f"config.model.{name}={value} is outside the vocabulary [0, {num_classes})")
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        cell_kw = dict(dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
        self.pad_id, self.bos_id, self.eos_id, self.hidden = pad_id, bos_id, eos_id, hidden
        self.carry_dtype = to_dtype(dtype)
        emb_init = nnx.with_partitioning(nnx.initializers.normal(1.0), ("vocab", "embed"))
        self.embed = nnx.Embed(
            num_classes,
            embed_dim,
            embedding_init=emb_init,
            dtype=to_dtype(dtype),
            param_dtype=to_dtype(param_dtype),
            rngs=rngs,
        )
        dims = [embed_dim] + [2 * hidden] * (encoder_layers - 1)
        self.forward = nnx.List([nnx.RNN(nnx.OptimizedLSTMCell(d, hidden, **cell_kw), return_carry=True) for d in dims])
        self.backward = nnx.List(
            [
                nnx.RNN(nnx.OptimizedLSTMCell(d, hidden, **cell_kw), return_carry=True, reverse=True, keep_order=True)
                for d in dims
            ]
        )
        self.bridge_c = dense(2 * hidden, hidden, ("mlp", "embed"), **kw)
        self.bridge_h = dense(2 * hidden, hidden, ("mlp", "embed"), **kw)
        self.decoder = Decoder(embed_dim, hidden, 2 * hidden, attention_dim, num_classes, **kw)
        self.drop = nnx.Dropout(dropout)

    def _check(self, tokens: jax.Array, what: str) -> None:
        if tokens.ndim != 2:
            raise ValueError(f"lstm_seq2seq: {what} must be int tokens [batch, length], got {tuple(tokens.shape)}")

    def encode(self, source: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
        """source [batch, S] -> (memory [batch, S, 2 * hidden], valid bool [batch, S], decoder carry (c, h))."""
        self._check(source, "source")
        valid = source != self.pad_id
        lengths = valid.sum(axis=1).astype(jnp.int32)
        h = self.drop(self.embed(source.astype(jnp.int32)), deterministic=not train, rngs=rngs)
        # An explicit zero carry: letting nnx.RNN draw it from its stored Rngs fails under jit (as in gru.py).
        zeros = jnp.zeros((source.shape[0], self.hidden), self.carry_dtype)
        for fwd, bwd in zip(self.forward, self.backward, strict=True):
            (cf, hf), yf = fwd(h, initial_carry=(zeros, zeros), seq_lengths=lengths)
            (cb, hb), yb = bwd(h, initial_carry=(zeros, zeros), seq_lengths=lengths)
            h = jnp.concatenate([yf, yb], -1)
        carry = (
            jnp.tanh(self.bridge_c(jnp.concatenate([cf, cb], -1))),
            jnp.tanh(self.bridge_h(jnp.concatenate([hf, hb], -1))),
        )
        return h, valid, carry

    def _decode(self, source, target_in, train, rngs):
        self._check(target_in, "target_in")
        if target_in.shape[0] != source.shape[0]:
            raise ValueError(f"lstm_seq2seq: target_in has {target_in.shape[0]} rows, the source {source.shape[0]}")
        memory, valid, carry = self.encode(source, train=train, rngs=rngs)
        embs = self.drop(self.embed(target_in.astype(jnp.int32)), deterministic=not train, rngs=rngs)
        keys = self.decoder.attention.keys(memory)
        _, feats, weights = self.decoder.run(carry, embs, keys, memory, valid)
        return feats, weights

    def __call__(
        self, x: jax.Array, *, target_in: jax.Array, train: bool = False, rngs: nnx.Rngs | None = None
    ) -> jax.Array:
        """x: source [batch, S]; target_in: decoder input [batch, T] -> logits [batch, T, vocab] (teacher forcing)."""
        feats, _ = self._decode(x, target_in, train, rngs)
        return self.decoder.logits(self.drop(feats, deterministic=not train, rngs=rngs))

    def align(self, source: jax.Array, target_in: jax.Array) -> jax.Array:
        """Attention weights float32 [batch, T, S] of the teacher-forced decoder (no dropout)."""
        return self._decode(source, target_in, False, None)[1]

    # ----------------------------------------------------------------------------------------------- decoding
    def init_cache(self, source: jax.Array, max_len: int = 0) -> dict:
        """Runs the encoder on source [batch, S] (max_len: unused, no length bound)."""
        del max_len
        memory, valid, (c, h) = self.encode(source)
        return {"c": c, "h": h, "keys": self.decoder.attention.keys(memory), "memory": memory, "valid": valid}

    def decode_step(self, tokens: jax.Array, cache: dict) -> tuple[jax.Array, dict]:
        """tokens [batch, t] -> (logits [batch, t, vocab] float32, cache with the decoder state after them)."""
        self._check(tokens, "tokens")
        if cache["h"].shape[0] != tokens.shape[0]:
            raise ValueError(f"decode_step: tokens have {tokens.shape[0]} rows, the cache {cache['h'].shape[0]}")
        embs = self.embed(tokens.astype(jnp.int32))
        (c, h), feats, _ = self.decoder.run(
            (cache["c"], cache["h"]), embs, cache["keys"], cache["memory"], cache["valid"]
        )
        return self.decoder.logits(feats), cache | {"c": c, "h": h}
