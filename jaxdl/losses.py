"""Softmax cross-entropy for classifiers and sequence models, with padding, ignored labels and mixed labels.

Logits are float32 `[batch, ..., classes]`, labels int `[batch, ...]` (a class per example, or per token for
language models). A label < 0 is ignored (padding tokens, masked-out positions). Mixup/CutMix batches carry a
second label `label_b` and a per-example weight `mix` (λ of `label`): the loss is λ·CE(label) + (1-λ)·CE(label_b)
and accuracy counts the argmax against `label`. `label_loss_sums` reduces per-label losses a model computed
itself (a sampled or hierarchical softmax head; see `jaxdl.train`) over the same valid labels.
"""

import jax
import jax.numpy as jnp
import optax


def _per_example(x: jax.Array, like: jax.Array) -> jax.Array:
    """[batch] -> broadcastable against labels [batch, ...]."""
    return x.reshape(x.shape + (1,) * (like.ndim - 1))


def xent_sums(
    logits: jax.Array,
    labels: jax.Array,
    mask: jax.Array | None = None,
    *,
    label_b: jax.Array | None = None,
    mix: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(sum of losses, number correct, number counted) over the labels >= 0 of the rows where mask (float [batch])
    is 1."""
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {logits.shape} do not match labels {labels.shape} (expected [*labels, classes])")
    valid = _valid(labels, mask)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
    if label_b is not None:
        lam = _per_example(mix.astype(jnp.float32), labels)
        losses_b = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(label_b, 0))
        losses = lam * losses + (1.0 - lam) * losses_b
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return (losses * valid).sum(), (correct * valid).sum(), valid.sum()


def _valid(labels: jax.Array, mask: jax.Array | None) -> jax.Array:
    """float32 [*labels.shape]: 1 where the label is >= 0 and its row's mask (float [batch]) is 1."""
    valid = (labels >= 0).astype(jnp.float32)
    if mask is not None:
        valid = valid * _per_example(mask.astype(jnp.float32), labels)
    return valid


def label_loss_sums(losses: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """(sum of losses, number counted) of per-label losses float [*labels.shape] over the labels >= 0 of the rows
    where mask (float [batch]) is 1 — the sums `xent_sums` takes, for losses a model computed itself."""
    if losses.shape != labels.shape:
        raise ValueError(f"per-label losses {losses.shape} do not match labels {labels.shape}")
    valid = _valid(labels, mask)
    return (losses.astype(jnp.float32) * valid).sum(), valid.sum()


def batch_loss(logits: jax.Array, batch: dict) -> tuple[jax.Array, jax.Array]:
    """Mean loss and accuracy of a training batch (its "label", and "label_b"/"mix" when it has them)."""
    loss_sum, correct, count = xent_sums(
        logits, batch["label"], batch.get("mask"), label_b=batch.get("label_b"), mix=batch.get("mix")
    )
    count = jnp.maximum(count, 1.0)
    return loss_sum / count, correct / count


def classification_loss(logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None):
    """Without `mask`: (mean loss, accuracy). With `mask` (float [batch], 0 on padding rows): (loss sum, correct
    count), to be divided by the count of valid labels."""
    loss_sum, correct, count = xent_sums(logits, labels, mask)
    if mask is None:
        count = jnp.maximum(count, 1.0)
        return loss_sum / count, correct / count
    return loss_sum, correct
