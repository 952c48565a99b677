"""BERT encoder (Devlin et al. 2019) in NNX, laid out so Hugging Face BERT checkpoints map onto it tensor by tensor.

token ids [batch, length] -> word + position + token-type embeddings -> LayerNorm -> `depth` post-LN blocks
(x = LN(x + attn(x)); x = LN(x + mlp(x)), exact erf GELU; `jaxdl.layers.attention` with the padded keys masked
through segment ids of `kernels.attention.api`, so `attention_impl` picks the kernel) -> one head:

- `head="mlm"`: masked-LM head (dense + GELU + LayerNorm, decoder tied to the word embeddings) -> logits
  [batch, length, vocab]; here `num_classes` is the vocabulary size (the registry convention for language models);
- `head="classify"`: `pool="cls"` (BERT's pooler: tanh(dense([CLS]))) or `pool="mean"` (mean over real tokens)
  -> dropout -> linear -> logits [batch, num_classes];
- `head="encoder"`: the last hidden states [batch, length, dim] (for feature extraction).

`Model.sentence_embedding` is the sentence-transformers pipeline (mean over real tokens, then L2 normalize).
Token id `pad_id` (0 = [PAD]) gives the attention mask unless one is passed. Layers are a Python list (one module
per layer, as in HF checkpoints; `jaxdl.convert.hf_bert` maps the weights). All outputs are float32.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.attention import Attention
from jaxdl.layers.dtypes import to_dtype
from jaxdl.layers.norm import make_norm
from jaxdl.parallel.rules import constrain

HEADS = ("mlm", "classify", "encoder")
POOLS = ("cls", "mean")
BERT_UNCASED_VOCAB = 30522
EMBED = ("embed",)  # logical axis of the LayerNorm scales and shifts


def _param(rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple, dtype, init=None) -> nnx.Param:
    init = nnx.initializers.normal(0.02) if init is None else init  # BERT's initializer_range
    return nnx.Param(nnx.with_partitioning(init, axes)(rngs.params(), shape, dtype))


def gelu(x: jax.Array) -> jax.Array:
    """The exact (erf) GELU that HF BERT's `hidden_act="gelu"` uses."""
    return jax.nn.gelu(x, approximate=False)


def mean_pool(hidden: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of `hidden` [batch, length, dim] over positions where `mask` [batch, length] is true (as
    sentence-transformers' Pooling: the count is clamped to 1e-9)."""
    m = mask.astype(jnp.float32)[..., None]
    return jnp.sum(hidden.astype(jnp.float32) * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1e-9)


class Layer(nnx.Module):
    """BERT's post-LN block: x = LN(x + drop(attn(x))); x = LN(x + drop(down(gelu(up(x)))))."""

    def __init__(self, dim, heads, mlp_dim, dropout, attention_dropout, eps, impl, *, dtype, param_dtype, rngs):
        pdt, zeros = to_dtype(param_dtype), nnx.initializers.zeros
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        # BERT's attention: biases, N(0, 0.02) kernels, a params key drawn per bias (BERT's init stream from
        # before the shared layer, so seeded models keep their values), probability dropout in training
        self.attention = Attention(
            dim,
            heads,
            use_bias=True,
            dropout=attention_dropout,
            attention_impl=impl,
            kernel_init=nnx.initializers.normal(0.02),
            draw_bias_keys=True,
            **kw,
        )
        self.attention_norm = make_norm("layer", dim, eps=eps, axes=EMBED, **kw)
        self.up = _param(rngs, (dim, mlp_dim), ("embed", "mlp"), pdt)
        self.up_bias = _param(rngs, (mlp_dim,), ("mlp",), pdt, zeros)
        self.down = _param(rngs, (mlp_dim, dim), ("mlp", "embed"), pdt)
        self.down_bias = _param(rngs, (dim,), ("embed",), pdt, zeros)
        self.output_norm = make_norm("layer", dim, eps=eps, axes=EMBED, **kw)
        self.dropout = nnx.Dropout(dropout)
        self.dtype = to_dtype(dtype)

    def __call__(
        self, x: jax.Array, mask: jax.Array, train: bool, rngs: nnx.Rngs | None, return_attention: bool = False
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """-> x [batch, length, dim]; with return_attention (x, probabilities [batch, heads, length, length])."""
        drop = lambda y: self.dropout(y, deterministic=not train, rngs=rngs)
        a = self.attention(x, key_mask=mask, train=train, rngs=rngs, return_probs=return_attention)
        a, probs = a if return_attention else (a, None)
        x = self.attention_norm(x + drop(a))
        dt = self.dtype
        h = gelu(x.astype(dt) @ self.up[...].astype(dt) + self.up_bias[...].astype(dt))
        h = constrain(h, ("batch", "length", "mlp"))
        x = self.output_norm(x + drop(h @ self.down[...].astype(dt) + self.down_bias[...].astype(dt)))
        x = constrain(x, ("batch", "act_length", "embed"))
        return (x, probs) if return_attention else x


class Model(nnx.Module):
    """int token ids [batch, length] -> float32 logits (see the module docstring for the heads)."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        head: str = "mlm",
        pool: str = "cls",
        vocab_size: int | None = None,
        depth: int = 2,
        dim: int = 64,
        heads: int = 4,
        mlp_dim: int = 256,
        max_positions: int = 512,
        type_vocab_size: int = 2,
        layer_norm_eps: float = 1e-12,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        pad_id: int = 0,
        dtype: str = "float32",
        param_dtype: str = "float32",
        attention_impl: str = "xla",
        rngs: nnx.Rngs,
    ):
        """vocab_size: for head="mlm" it defaults to (and must equal) num_classes; otherwise it defaults to
        BERT's uncased WordPiece vocabulary (30522). pool: "cls" or "mean", for head="classify".
        attention_impl: the attention kernel (kernels.attention.api: xla | cudnn | pallas | triton | auto; the
        padding mask is a segment-id mask, which cudnn lacks); training with attention_dropout > 0 runs the
        unfused softmax (no kernel drops probabilities), so it needs xla or auto."""
        if head not in HEADS:
            raise ValueError(f"config.model.head={head!r}: choose one of {HEADS}")
        if pool not in POOLS:
            raise ValueError(f"config.model.pool={pool!r}: choose one of {POOLS}")
        if len(input_shape) != 1:
            raise ValueError(f"bert: input_shape={input_shape} must be (length,) of token ids")
        if input_shape[0] > max_positions:
            raise ValueError(f"bert: input length {input_shape[0]} exceeds config.model.max_positions={max_positions}")
        if head == "mlm":
            if vocab_size is not None and vocab_size != num_classes:
                raise ValueError(f"config.model.vocab_size={vocab_size} != num_classes={num_classes} (head='mlm')")
            vocab_size = num_classes
        vocab_size = BERT_UNCASED_VOCAB if vocab_size is None else vocab_size
        pdt, zeros = to_dtype(param_dtype), nnx.initializers.zeros
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        self.word_embeddings = _param(rngs, (vocab_size, dim), ("vocab", "embed"), pdt)
        self.position_embeddings = _param(rngs, (max_positions, dim), (None, "embed"), pdt)
        self.token_type_embeddings = _param(rngs, (type_vocab_size, dim), (None, "embed"), pdt)
        self.embeddings_norm = make_norm("layer", dim, eps=layer_norm_eps, axes=EMBED, rngs=rngs, **kw)
        self.layers = nnx.List(
            [
                Layer(dim, heads, mlp_dim, dropout, attention_dropout, layer_norm_eps, attention_impl, **kw, rngs=rngs)
                for _ in range(depth)
            ]
        )
        self.pooler = _param(rngs, (dim, dim), ("embed", None), pdt)  # HF's BertModel pooler (dense + tanh)
        self.pooler_bias = _param(rngs, (dim,), (None,), pdt, zeros)
        if head == "mlm":
            self.mlm_dense = _param(rngs, (dim, dim), ("embed", None), pdt)
            self.mlm_dense_bias = _param(rngs, (dim,), (None,), pdt, zeros)
            self.mlm_norm = make_norm("layer", dim, eps=layer_norm_eps, axes=EMBED, rngs=rngs, **kw)
            self.mlm_bias = _param(rngs, (vocab_size,), ("vocab",), pdt, zeros)
        elif head == "classify":
            self.classifier = _param(rngs, (dim, num_classes), ("embed", "classes"), pdt)
            self.classifier_bias = _param(rngs, (num_classes,), ("classes",), pdt, zeros)
        self.dropout = nnx.Dropout(dropout)
        self.head, self.pool, self.pad_id, self.vocab_size = head, pool, pad_id, vocab_size
        self.dtype = to_dtype(dtype)

    def attention_mask(self, x: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
        """Boolean [batch, length]: the given mask, or `x != pad_id`."""
        return (x != self.pad_id) if attention_mask is None else attention_mask.astype(bool)

    def encode(
        self,
        x: jax.Array,
        *,
        attention_mask: jax.Array | None = None,
        token_type_ids: jax.Array | None = None,
        train: bool = False,
        rngs: nnx.Rngs | None = None,
        return_attention: bool = False,
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """Token ids [batch, length] -> last hidden states [batch, length, dim] (float32); with return_attention
        (those, every layer's attention probabilities [depth, batch, heads, length, length] float32)."""
        if x.ndim != 2:
            raise ValueError(f"bert: token ids must be [batch, length], got shape {x.shape}")
        length = x.shape[1]
        if length > self.position_embeddings.shape[0]:
            raise ValueError(f"bert: length {length} exceeds max_positions={self.position_embeddings.shape[0]}")
        mask = self.attention_mask(x, attention_mask)
        tt = jnp.zeros_like(x) if token_type_ids is None else token_type_ids
        h = (
            jnp.take(self.word_embeddings[...], x, axis=0)
            + self.position_embeddings[...][:length][None]
            + jnp.take(self.token_type_embeddings[...], tt, axis=0)
        )
        h = self.dropout(self.embeddings_norm(h.astype(self.dtype)), deterministic=not train, rngs=rngs)
        h = constrain(h, ("batch", "act_length", "embed"))
        probs = []
        for layer in self.layers:
            h = layer(h, mask, train, rngs, return_attention)
            if return_attention:
                h, p = h
                probs.append(p)
        return (h.astype(jnp.float32), jnp.stack(probs)) if return_attention else h.astype(jnp.float32)

    def sentence_embedding(
        self, x: jax.Array, *, attention_mask: jax.Array | None = None, normalize: bool = True
    ) -> jax.Array:
        """The sentence-transformers pipeline: mean of the last hidden states over real tokens, L2-normalized
        (norm clamped at 1e-12 as torch's F.normalize) -> [batch, dim] float32."""
        emb = mean_pool(self.encode(x, attention_mask=attention_mask), self.attention_mask(x, attention_mask))
        if normalize:
            emb = emb / jnp.maximum(jnp.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)
        return emb

    def pooled(self, hidden: jax.Array) -> jax.Array:
        """BERT's pooler: tanh(dense(hidden[:, 0])) -> [batch, dim]."""
        return jnp.tanh(hidden[:, 0] @ self.pooler[...].astype(jnp.float32) + self.pooler_bias[...])

    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        rngs: nnx.Rngs | None = None,
        attention_mask: jax.Array | None = None,
        token_type_ids: jax.Array | None = None,
        return_attention: bool = False,
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """-> the head's output; with `return_attention`, (that, attention [depth, batch, heads, length, length])."""
        x = x.astype(jnp.int32)
        kw = dict(attention_mask=attention_mask, token_type_ids=token_type_ids, train=train, rngs=rngs)
        if return_attention:
            h, probs = self.encode(x, **kw, return_attention=True)
            return self._head(h, x, attention_mask, train, rngs), probs
        return self._head(self.encode(x, **kw), x, attention_mask, train, rngs)

    def _head(self, h, x, attention_mask, train, rngs) -> jax.Array:
        if self.head == "encoder":
            return h
        if self.head == "mlm":
            h = gelu(h @ self.mlm_dense[...].astype(jnp.float32) + self.mlm_dense_bias[...])
            h = self.mlm_norm(h).astype(jnp.float32)
            logits = jnp.einsum("bld,vd->blv", h, self.word_embeddings[...].astype(jnp.float32))
            return constrain(logits + self.mlm_bias[...], ("batch", "length", "vocab")).astype(jnp.float32)
        if self.pool == "cls":
            z = self.pooled(h)
        else:
            z = mean_pool(h, self.attention_mask(x, attention_mask))
        z = self.dropout(z, deterministic=not train, rngs=rngs)
        return (z @ self.classifier[...].astype(jnp.float32) + self.classifier_bias[...]).astype(jnp.float32)
