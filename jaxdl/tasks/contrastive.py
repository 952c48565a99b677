"""Contrastive image–text learning (CLIP, SigLIP): batches of pairs "input" (images) and "text" (token ids); the
model (e.g. `clip`) maps them to logits [b, b] (image i vs text j), positives on the diagonal.

Losses (`loss`), over the whole global batch:
  - "infonce" (CLIP): (CE(logits, i) over each row + CE(logits^T, i) over each column) / 2, mean over pairs;
  - "siglip" (Zhai et al. 2023): -1/b sum_ij log sigmoid(z_ij * logits_ij), z = +1 on the diagonal, -1 off it.
`mask_duplicates` (default on): an off-diagonal pair whose text is identical to the row's own text is not a
negative (class-level captions repeat inside a batch): InfoNCE removes it from the row's and the column's
softmax, SigLIP from the sum. The logits are computed by one global matmul in the jitted step; under data
parallelism the model constrains them to ("batch", None), so XLA all-gathers the text embeddings and every image
still sees the whole batch's texts (8 devices give the 1-device loss and gradients: tests/test_contrastive.py).

Metrics: loss, `accuracy` (image -> text argmax hits the row's text, duplicates counted as hits), `scale`
(exp(t)), `bias`. Default evaluators: `zero_shot` (prompt ensembles, seen and held-out classes) and `retrieval`.
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxdl.tasks.base import Task as BaseTask

LOSSES = ("infonce", "siglip")


def duplicate_mask(text: jax.Array) -> jax.Array:
    """bool [b, b]: texts i and j (int [b, length]) are identical and i != j."""
    same = jnp.all(text[:, None, :] == text[None, :, :], axis=-1)
    return same & ~jnp.eye(text.shape[0], dtype=bool)


def infonce(logits: jax.Array, duplicates: jax.Array | None = None) -> jax.Array:
    """Symmetric InfoNCE of logits [b, b] (positives on the diagonal); `duplicates` bool [b, b] drops pairs from
    both softmaxes. Scalar float32."""
    if duplicates is not None:
        logits = jnp.where(duplicates, -jnp.inf, logits)
    target = jnp.arange(logits.shape[0])
    rows = optax.softmax_cross_entropy_with_integer_labels(logits, target)
    cols = optax.softmax_cross_entropy_with_integer_labels(logits.T, target)
    return 0.5 * (jnp.mean(rows) + jnp.mean(cols))


def siglip(logits: jax.Array, duplicates: jax.Array | None = None) -> jax.Array:
    """SigLIP sigmoid loss of logits [b, b]: -1/b sum_ij log sigmoid(z_ij logits_ij); `duplicates` pairs are left
    out of the sum. Scalar float32."""
    z = 2.0 * jnp.eye(logits.shape[0], dtype=logits.dtype) - 1.0
    terms = jax.nn.log_sigmoid(z * logits)
    if duplicates is not None:
        terms = jnp.where(duplicates, 0.0, terms)
    return -jnp.sum(terms) / logits.shape[0]


class Task(BaseTask):
    batch_keys = ("input", "text")
    not_model_inputs = (*BaseTask.not_model_inputs, "text")

    def __init__(self, loss: str = "infonce", mask_duplicates: bool = True):
        if loss not in LOSSES:
            raise ValueError(f"config.task.loss={loss!r} is not one of {LOSSES}")
        self.kind, self.mask_duplicates = loss, mask_duplicates

    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        for name in ("encode_image", "encode_text", "logits"):
            if not hasattr(model, name):
                raise ValueError(f"task contrastive: model {type(model).__module__} has no {name}() (use e.g. clip)")
        text = batch["text"]
        logits = model(batch["input"], text=text, train=True, rngs=rngs)
        duplicates = duplicate_mask(text) if self.mask_duplicates else None
        loss = (infonce if self.kind == "infonce" else siglip)(logits, duplicates)
        hit = jnp.argmax(logits, axis=1)
        target = jnp.arange(logits.shape[0])
        correct = (hit == target) | (duplicates[target, hit] if duplicates is not None else False)
        return loss, {
            "accuracy": jnp.mean(correct.astype(jnp.float32)),
            "scale": model.scale(),
            "bias": model.bias[...].astype(jnp.float32),
        }

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="zero_shot"), "retrieval": dict(kind="retrieval")}
