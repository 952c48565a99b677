"""BiLSTM sequence tagger with a softmax or linear-chain CRF output (Lample et al. 2016, "Neural Architectures for
Named Entity Recognition": word embeddings + a character BiLSTM per word -> a word-level BiLSTM -> tag scores).

Inputs: `x` int32 [batch, seq] word ids (PAD = 0 marks padding, any real token is >= 1) and `chars` int32
[batch, seq, max_chars] character ids (0 = padding), as jaxdl.data.hironsan stores them. `model(x, chars=...)`
returns the per-token tag scores float32 [batch, seq, num_tags] (the softmax logits, or the CRF's emissions);
`model.decode(x, chars=...)` the predicted tags int32 [batch, seq] (argmax per token, or the CRF's Viterbi path
under its constraints), 0 on padding; `model.mask(x)` bool [batch, seq].

`head="crf"` adds `jaxdl.layers.crf.CRF` (`model.crf`); `constraints="bio"` forbids IOB2-invalid transitions using
`tag_names` (comma-separated, in label-id order; e.g. ",".join(jaxdl.data.hironsan.TAGS)). The `tag` task trains
either head (`jaxdl.tasks.tag`).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.crf import CRF
from jaxdl.layers.dense import dense
from jaxdl.layers.dtypes import to_dtype

HEADS = ("softmax", "crf")


def _tag_names(tag_names: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(tag_names, str):
        return tuple(t.strip() for t in tag_names.split(",") if t.strip())
    return tuple(tag_names)


class _BiLSTM(nnx.Module):
    """[batch, time, din] -> [batch, time, 2 * hidden] (forward and backward states), and the final states
    [batch, 2 * hidden]; positions at or past `lengths` do not affect the outputs of the real ones."""

    def __init__(self, din: int, hidden: int, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
        self.fwd = nnx.RNN(nnx.OptimizedLSTMCell(din, hidden, **kw), return_carry=True)
        self.bwd = nnx.RNN(nnx.OptimizedLSTMCell(din, hidden, **kw), return_carry=True, reverse=True, keep_order=True)
        self.hidden, self.carry_dtype = hidden, to_dtype(dtype)

    def __call__(self, x, lengths):
        # An explicit zero carry: letting nnx.RNN draw it from its stored Rngs fails under jit (as in gru.py).
        zeros = jnp.zeros((x.shape[0], self.hidden), self.carry_dtype)
        (_, hf), yf = self.fwd(x, initial_carry=(zeros, zeros), seq_lengths=lengths)
        (_, hb), yb = self.bwd(x, initial_carry=(zeros, zeros), seq_lengths=lengths)
        return jnp.concatenate([yf, yb], -1), jnp.concatenate([hf, hb], -1)


class Model(nnx.Module):
    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        word_vocab: int = 4096,
        char_vocab: int = 2048,
        word_dim: int = 100,
        char_dim: int = 30,
        char_hidden: int = 25,
        hidden: int = 100,
        dropout: float = 0.5,
        head: str = "softmax",
        constraints: str = "none",
        tag_names: str = "",
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        """word_vocab / char_vocab: id spaces of the inputs. char_hidden: units per direction of the character
        BiLSTM (0: no character features). hidden: units per direction of the word BiLSTM. dropout: on the word
        features and on the BiLSTM outputs. head: "softmax" | "crf". constraints: "none" | "bio" (crf only; needs
        tag_names, comma-separated, num_classes of them)."""
        if len(input_shape) != 1:
            raise ValueError(f"bilstm_tagger: input_shape must be (seq,) of word ids, got {tuple(input_shape)}")
        if head not in HEADS:
            raise ValueError(f"config.model.head={head!r} is not one of {HEADS}")
        if constraints not in ("none", "bio"):
            raise ValueError(f"config.model.constraints={constraints!r} is not one of ('none', 'bio')")
        if constraints != "none" and head != "crf":
            raise ValueError(f"config.model.constraints={constraints!r} needs head='crf' (got head={head!r})")
        names = _tag_names(tag_names)
        if names and len(names) != num_classes:
            raise ValueError(f"config.model.tag_names has {len(names)} tags; the dataset has {num_classes} classes")
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        emb = dict(dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
        self.word_vocab, self.char_vocab = word_vocab, char_vocab
        self.word_embed = nnx.Embed(
            word_vocab,
            word_dim,
            embedding_init=nnx.with_partitioning(nnx.initializers.normal(0.1), ("vocab", "embed")),
            **emb,
        )
        if char_hidden:
            self.char_embed = nnx.Embed(
                char_vocab,
                char_dim,
                embedding_init=nnx.with_partitioning(nnx.initializers.normal(0.1), ("vocab", "embed")),
                **emb,
            )
            self.char_rnn = _BiLSTM(char_dim, char_hidden, **kw)
        else:
            self.char_embed = self.char_rnn = None
        self.rnn = _BiLSTM(word_dim + 2 * char_hidden, hidden, **kw)
        self.out = dense(2 * hidden, num_classes, ("mlp", "vocab"), **kw)
        self.drop = nnx.Dropout(dropout)
        self.head = head
        self.crf = (
            CRF(num_classes, tag_names=names or None, constraints=None if constraints == "none" else constraints)
            if head == "crf"
            else None
        )

    @staticmethod
    def mask(x: jax.Array) -> jax.Array:
        """bool [batch, seq]: the real tokens (word id != PAD = 0)."""
        return x != 0

    def __call__(
        self, x: jax.Array, *, chars: jax.Array, train: bool = False, rngs: nnx.Rngs | None = None
    ) -> jax.Array:
        """x int32 [batch, seq], chars int32 [batch, seq, max_chars] -> tag scores float32 [batch, seq, tags]."""
        if x.ndim != 2 or chars.ndim != 3 or chars.shape[:2] != x.shape:
            raise ValueError(
                f"bilstm_tagger: x must be [batch, seq] and chars [batch, seq, max_chars], got "
                f"{tuple(x.shape)} and {tuple(chars.shape)}"
            )
        b, t = x.shape
        lengths = self.mask(x).sum(-1).astype(jnp.int32)
        feats = self.word_embed(x.astype(jnp.int32))
        if self.char_rnn is not None:
            c = chars.reshape(b * t, chars.shape[-1]).astype(jnp.int32)
            c_len = jnp.maximum((c != 0).sum(-1), 1).astype(jnp.int32)
            _, final = self.char_rnn(self.char_embed(c), c_len)
            feats = jnp.concatenate([feats, final.reshape(b, t, -1).astype(feats.dtype)], -1)
        feats = self.drop(feats, deterministic=not train, rngs=rngs)
        h, _ = self.rnn(feats, lengths)
        h = self.drop(h, deterministic=not train, rngs=rngs)
        return self.out(h).astype(jnp.float32)

    def decode(self, x: jax.Array, *, chars: jax.Array) -> jax.Array:
        """Predicted tags int32 [batch, seq] (0 on padding): per-token argmax, or the CRF's Viterbi path."""
        scores = self(x, chars=chars, train=False)
        mask = self.mask(x)
        if self.crf is None:
            return jnp.where(mask, jnp.argmax(scores, -1), 0).astype(jnp.int32)
        return self.crf.decode(scores, mask)
