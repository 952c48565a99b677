"""Recurrent token models: an LSTM or GRU next-token language model (and a bidirectional per-token tagger).

tokens int32 [batch, seq] -> embedding -> dropout -> `layers` recurrent layers (`nnx.RNN` over
`nnx.OptimizedLSTMCell` or `nnx.GRUCell`, `dim` units; dropout between layers) -> dropout -> logits float32
[batch, seq, vocab] (vocab = `num_classes`; the transposed embedding when `tie_embeddings`, which needs
embed_dim == dim). Position i's logits see tokens 0..i only: the byte-level LM datasets (`pydoc_bytes128`, ...)
train it as is, and bits per byte = eval/loss / ln 2.

`bidirectional=True` runs a backward layer beside each forward one (outputs concatenated, 2 * dim features into the
next layer): every position then sees the whole sequence, so it is a per-token tagger/encoder, not a language model
(and has no `decode_step`).

Generation (the `jaxdl.decode` step-function interface, cache rows on axis `CACHE_BATCH_AXIS` = 0):
`init_cache(batch)` gives the zero recurrent state {"layers": one carry per layer ((c, h) for LSTM, h for GRU),
[batch, dim] arrays}; `decode_step(tokens [batch, t], cache) -> (logits [batch, t, vocab], cache)` continues it and
equals the full forward pass at the same positions.

Output head (`jaxdl.models.language._lm_head`): `head="full"` (default) is the projection above; `head="sampled"` or
`"hierarchical"` (options `num_sampled`, `proposal`, `proposal_power`, `sample_unique`, `tree`) trains through
`label_losses(tokens, labels, train=True, rngs=...)` -> per-position losses float32 [batch, seq] (the trainer's
`uses_label_losses` protocol, see `jaxdl.train`), never building training logits, while `__call__` and
`decode_step` return logits of the exact distribution (sampled: full softmax over the same weights; hierarchical:
exact log-probabilities). With `tie_embeddings` the sampled head's output vectors are the embedding table.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.dense import dense
from jaxdl.layers.dtypes import to_dtype
from jaxdl.models.language import _lm_head

CELLS = {"lstm": nnx.OptimizedLSTMCell, "gru": nnx.GRUCell}
CACHE_BATCH_AXIS = 0


class Model(nnx.Module):
    """tokens [batch, seq] -> logits [batch, seq, vocab] (float32); vocab = num_classes."""

    CACHE_BATCH_AXIS = CACHE_BATCH_AXIS
    EXTRA_ARGS = staticmethod(_lm_head.options)  # the output head's keys, taken as **head_options

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        cell: str = "lstm",
        dim: int = 256,
        layers: int = 2,
        embed_dim: int = 0,
        dropout: float = 0.0,
        bidirectional: bool = False,
        tie_embeddings: bool = False,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
        **head_options,
    ):
        """cell: "lstm" or "gru". dim: units per layer (and direction). embed_dim 0 = dim. head_options: the
        keys of the output layer (`jaxdl.models.language._lm_head.options`)."""
        if len(input_shape) != 1:
            raise ValueError(f"rnn_lm: input_shape must be (seq,) of token ids, got {tuple(input_shape)}")
        if cell not in CELLS:
            raise ValueError(f"config.model.cell={cell!r}: choose one of {sorted(CELLS)}")
        if layers < 1:
            raise ValueError(f"config.model.layers={layers}: expected >= 1")
        embed_dim = embed_dim or dim
        if tie_embeddings and (embed_dim != dim or bidirectional):
            raise ValueError("config.model.tie_embeddings needs embed_dim == dim and bidirectional=False")
        opts = _lm_head.options(**head_options)
        head = opts["head"]
        _lm_head.check(opts, tie_embeddings=tie_embeddings, model="rnn_lm")
        self.cell, self.dim, self.tie, self.bidirectional = cell, dim, tie_embeddings, bidirectional
        self.head_kind = head
        self.uses_label_losses = head != "full"  # the trainer's protocol: train through label_losses
        self.carry_dtype = to_dtype(dtype)
        emb_init = nnx.with_partitioning(nnx.initializers.normal(embed_dim**-0.5), ("vocab", "embed"))
        self.embed = nnx.Embed(
            num_classes,
            embed_dim,
            embedding_init=emb_init,
            dtype=to_dtype(dtype),
            param_dtype=to_dtype(param_dtype),
            rngs=rngs,
        )
        cell_kw = dict(dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
        width = 2 * dim if bidirectional else dim
        ins = [embed_dim] + [width] * (layers - 1)
        self.forward = nnx.List([nnx.RNN(CELLS[cell](d, dim, **cell_kw), return_carry=True) for d in ins])
        self.backward = nnx.List(
            [nnx.RNN(CELLS[cell](d, dim, **cell_kw), reverse=True, keep_order=True) for d in ins]
            if bidirectional
            else []
        )
        self.drop = nnx.Dropout(dropout)
        if head != "full":
            tied = self.embed if tie_embeddings else None
            self.head = _lm_head.make(
                width, num_classes, tied=tied, dtype=dtype, param_dtype=param_dtype, rngs=rngs, **opts
            )
        elif not tie_embeddings:
            self.head = dense(width, num_classes, ("embed", "vocab"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def _zero_carry(self, batch: int):
        # An explicit zero carry: letting nnx.RNN draw it from its stored Rngs fails under jit (as in gru.py).
        zeros = jnp.zeros((batch, self.dim), self.carry_dtype)
        return (zeros, zeros) if self.cell == "lstm" else zeros

    def _logits(self, h: jax.Array) -> jax.Array:
        """Output features [batch, seq, width] (after the last dropout) -> logits float32 [batch, seq, vocab]."""
        if self.head_kind != "full":
            return _lm_head.logits(self.head, h)
        return (self.embed.attend(h) if self.tie else self.head(h)).astype(jnp.float32)

    def _run(self, x, carries, train, rngs):
        """-> (output features [batch, seq, width] after the last dropout, new carries)."""
        if x.ndim != 2:
            raise ValueError(f"rnn_lm: tokens must be [batch, seq], got shape {tuple(x.shape)}")
        h = self.drop(self.embed(x.astype(jnp.int32)), deterministic=not train, rngs=rngs)
        new = []
        for i, fwd in enumerate(self.forward):
            if i:
                h = self.drop(h, deterministic=not train, rngs=rngs)
            carry, y = fwd(h, initial_carry=carries[i])
            new.append(carry)
            if self.bidirectional:
                y = jnp.concatenate([y, self.backward[i](h, initial_carry=self._zero_carry(x.shape[0]))], -1)
            h = y
        return self.drop(h, deterministic=not train, rngs=rngs), new

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        """tokens int [batch, seq] -> logits float32 [batch, seq, vocab] (of the exact distribution)."""
        return self._logits(self._run(x, self._zero_carries(x), train, rngs)[0])

    def label_losses(
        self, x: jax.Array, labels: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None
    ) -> jax.Array:
        """tokens int [batch, seq], labels int [batch, seq] -> -log p(label) float32 [batch, seq], 0 at labels < 0.

        train=True: the head's training loss (sampled: K negatives drawn from rngs' `sampling` stream, else
        `dropout`); train=False: the exact cross-entropy. The full head computes the logits."""
        h = self._run(x, self._zero_carries(x), train, rngs)[0]
        if self.head_kind == "full":
            return _lm_head.full_losses(self._logits(h), labels)
        return self.head(h, labels, train=train, rngs=rngs)

    def _zero_carries(self, x: jax.Array) -> list:
        if x.ndim != 2:
            raise ValueError(f"rnn_lm: tokens must be [batch, seq], got shape {tuple(x.shape)}")
        return [self._zero_carry(x.shape[0])] * len(self.forward)

    def init_cache(self, batch: int) -> dict:
        """The zero recurrent state of `batch` rows."""
        return {"layers": [self._zero_carry(batch) for _ in self.forward]}

    def decode_step(self, tokens: jax.Array, cache: dict) -> tuple[jax.Array, dict]:
        """tokens [batch, t] continuing the cached state -> (logits [batch, t, vocab] float32, updated cache)."""
        if self.bidirectional:
            raise ValueError("rnn_lm: a bidirectional model sees the future; it cannot decode step by step")
        h, carries = self._run(tokens, cache["layers"], False, None)
        return self._logits(h), {"layers": carries}
