"""The output head of the language models (gpt, rnn_lm): full, sampled or hierarchical softmax, chosen by config.

`config.model.head` (default "full") picks it, and these `config.model` keys configure it:

- `num_sampled` (sampled; default 64): negatives K drawn per training step, shared by all positions.
- `proposal` (sampled; default "unigram"): "unigram" (train-split token counts ^ `proposal_power`), "log_uniform"
  (Zipf over the ids; assumes ids sorted by decreasing frequency) or "uniform".
- `proposal_power` (sampled; default 0.75, word2vec's): the unigram proposal's exponent.
- `sample_unique` (sampled; default True): negatives drawn without replacement.
- `tree` (hierarchical; default "huffman"): "huffman" (from train-split token counts, as in word2vec) or "balanced".

"full" is the models' original head (a Linear layer, or the transposed token embedding when `tie_embeddings`):
same parameters, same numbers as before the head option existed. "sampled" and "hierarchical" are the layers of
`jaxdl.layers.softmax` (their kernels are [vocab (or vocab - 1 nodes), dim] rows). With `tie_embeddings` the
sampled head's output vectors *are* the token embedding (one shared nnx.Param; the head keeps its own bias); the
hierarchical head's node vectors cannot be word vectors, so it needs `tie_embeddings=False`.

Token counts: the unigram proposal and the Huffman tree need the count of each token id in the training data.
The trainer passes `label_counts` (a zero-argument callable returning int64 [vocab], computed once from the train
split by `jaxdl.data.label_counts`, only when a head asks for it); models built elsewhere without counts raise a
ValueError naming `config.model.proposal` / `config.model.tree` and the options that need none.

The trainer protocol (see `jaxdl.train`): a model with a sampled or hierarchical head sets
`uses_label_losses = True` and trains through `label_losses(x, labels, train=True, rngs=...)` (per-position
losses float32 [batch, seq], 0 at labels < 0), never building [batch, seq, vocab] logits; its `__call__` and
`decode_step` return logits of the exact distribution (sampled: the full softmax logits h W^T + b over the same
weights; hierarchical: the exact log-probabilities, already normalized), so evaluation and generation are exact.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdl.layers import softmax

HEADS = softmax.NAMES  # ("full", "sampled", "hierarchical")
Counts = np.ndarray | Callable[[], np.ndarray] | None


def options(
    *,
    head: str = "full",
    num_sampled: int = 64,
    proposal: str = "unigram",
    proposal_power: float = 0.75,
    sample_unique: bool = True,
    tree: str = "huffman",
    label_counts: Counts = None,
) -> dict:
    """The head's config keys with their defaults (the module docstring says what each does). A language model
    takes them as `**head_options` and names this function `HEAD_OPTIONS`, so the model registry accepts and
    checks them as the model's own arguments; label_counts comes from the trainer, not the config."""
    return dict(head=head, num_sampled=num_sampled, proposal=proposal, proposal_power=proposal_power,
                sample_unique=sample_unique, tree=tree, label_counts=label_counts)  # fmt: skip


def check(opts: dict, *, tie_embeddings: bool, model: str) -> None:
    """Fails naming the config key on an unknown head / proposal / tree or an impossible tie (`opts`: `options`)."""
    head, proposal, tree = opts["head"], opts["proposal"], opts["tree"]
    if head not in HEADS:
        raise ValueError(f"config.model.head={head!r}: choose one of {HEADS}")
    if head == "sampled" and proposal not in softmax.PROPOSALS:
        raise ValueError(f"config.model.proposal={proposal!r}: choose one of {softmax.PROPOSALS}")
    if head == "hierarchical" and tree not in softmax.TREES:
        raise ValueError(f"config.model.tree={tree!r}: choose one of {softmax.TREES}")
    if head == "hierarchical" and tie_embeddings:
        raise ValueError(
            f"{model}: config.model.head='hierarchical' has one vector per tree node, not per token, so it cannot "
            "share the token embedding: set config.model.tie_embeddings=False"
        )


def _counts(label_counts: Counts, vocab: int, key: str, value: str, alternatives: str) -> np.ndarray:
    if label_counts is None:
        raise ValueError(
            f"config.model.{key}={value!r} needs the training data's token counts, and none were given (the "
            f"trainer computes them from config.data.train_split; a model built directly takes label_counts=...). "
            f"Use config.model.{key}={alternatives}, which need none."
        )
    counts = np.asarray(label_counts() if callable(label_counts) else label_counts)
    if counts.shape != (vocab,):
        raise ValueError(f"label_counts has shape {counts.shape}; expected [vocab={vocab}] (config.model.{key})")
    return counts


def make(
    dim: int,
    vocab: int,
    *,
    head: str,
    tied: nnx.Embed | None,
    num_sampled: int,
    proposal: str,
    proposal_power: float,
    sample_unique: bool,
    tree: str,
    label_counts: Counts,
    dtype: str,
    param_dtype: str,
    rngs: nnx.Rngs,
) -> nnx.Module:
    """The sampled or hierarchical output layer on `dim` features (call `check` first). `tied`: the token
    embedding whose [vocab, dim] table becomes the sampled head's output vectors."""
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    if head == "sampled":
        counts = None
        if proposal == "unigram":
            counts = _counts(label_counts, vocab, "proposal", proposal, "'log_uniform' or 'uniform'")
        limit = vocab if sample_unique else np.inf
        if not 1 <= num_sampled <= limit:
            raise ValueError(
                f"config.model.num_sampled={num_sampled}: must be in [1, vocab={vocab}] "
                f"(config.model.sample_unique={sample_unique})"
            )
        out = softmax.SampledSoftmax(dim, vocab, num_sampled=num_sampled, proposal=proposal, counts=counts,
                                     power=proposal_power, unique=sample_unique, **kw)  # fmt: skip
        if tied is not None:
            if tied.embedding.shape != out.kernel.shape:
                raise ValueError(f"config.model.tie_embeddings: embedding {tied.embedding.shape} != [vocab, {dim}]")
            out.kernel = tied.embedding  # one shared Param: the output vectors are the token embedding
        return out
    if head == "hierarchical":
        counts = _counts(label_counts, vocab, "tree", tree, "'balanced'") if tree == "huffman" else None
        return softmax.HierarchicalSoftmax(dim, vocab, tree=tree, counts=counts, **kw)
    raise ValueError(f"config.model.head={head!r}: no separate layer for this head (choose one of {HEADS[1:]})")


def logits(out: nnx.Module, h: jax.Array) -> jax.Array:
    """float32 [..., vocab] logits of the exact distribution: full-softmax logits (sampled) or the exact
    log-probabilities (hierarchical; memory [..., vocab, depth])."""
    if isinstance(out, softmax.HierarchicalSoftmax):
        return out.log_probs(h)
    return out.logits(h)


def full_losses(logits_: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-position cross-entropy float32 [...] of full logits, 0 at labels < 0 (the "full" head's label_losses)."""
    if logits_.shape[:-1] != labels.shape:
        raise ValueError(f"labels {labels.shape} do not match logits {logits_.shape} (expected [*labels, vocab])")
    nll = optax.softmax_cross_entropy_with_integer_labels(logits_, jnp.maximum(labels, 0))
    return jnp.where(labels < 0, 0.0, nll).astype(jnp.float32)
