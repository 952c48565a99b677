"""CTC sequence recognition (speech → characters): `optax.ctc_loss` over the model's per-frame logits.

Batch: `input` (e.g. waveforms float32 [batch, samples]), `label` int32 [batch, max_label] target ids with -1 on
padding (id 0 is the blank and never a target), extra model inputs such as `input_length` int32 [batch] passed
through; an optional `mask` [batch] (0 on padding rows) drops rows. The model returns logits float32 [batch,
frames, classes] and defines `output_lengths(input_length)` (its real output frames).

Loss: mean over real rows of -log p_ctc(label | x) / max(label length, 1) (per-character negative
log-likelihood, so learning rates carry over between corpora of different prompt lengths); `sum_loss` metric:
the plain per-utterance mean. An utterance whose label cannot be aligned (too few frames) makes optax return a
huge loss (~1e5), never NaN; the metric `infeasible` counts them.
Default evaluator: `asr` (greedy CER/WER with jiwer) on `config.data.eval_split`.
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxdl.tasks.base import Task as BaseTask


def ctc_terms(logits: jax.Array, out_lengths: jax.Array, labels: jax.Array, blank: int = 0) -> dict[str, jax.Array]:
    """Per-utterance CTC terms: {"nll": -log p(label | x) float32 [batch], "label_length": int32 [batch],
    "infeasible": bool [batch] (fewer frames than the label needs)}."""
    frames = logits.shape[1]
    logit_paddings = (jnp.arange(frames)[None, :] >= out_lengths[:, None]).astype(jnp.float32)
    label_paddings = (labels < 0).astype(jnp.float32)
    nll = optax.ctc_loss(logits, logit_paddings, jnp.maximum(labels, 0), label_paddings, blank_id=blank)
    real = labels >= 0
    length = real.sum(1)
    repeats = (real[:, 1:] & (labels[:, 1:] == labels[:, :-1])).sum(1)
    return {"nll": nll, "label_length": length, "infeasible": out_lengths < length + repeats}


class Task(BaseTask):
    not_model_inputs = (*BaseTask.not_model_inputs, "label_length")

    def __init__(self, blank: int = 0):
        """blank: the blank id of the model's outputs."""
        self.blank = blank

    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        labels = batch["label"]
        if labels.ndim != 2:
            raise ValueError(f"task ctc: batch['label'] must be [batch, max_label], got shape {labels.shape}")
        if "input_length" not in batch:
            raise ValueError("task ctc: the batch has no 'input_length' (real samples per utterance)")
        logits = model(batch["input"], train=True, rngs=rngs, **self.model_inputs(batch))
        out_lengths = model.output_lengths(batch["input_length"])
        t = ctc_terms(logits, out_lengths, labels, self.blank)
        rows = (
            jnp.ones(labels.shape[0], jnp.float32) if "mask" not in batch else (batch["mask"] > 0).astype(jnp.float32)
        )
        n = jnp.maximum(rows.sum(), 1.0)
        per_char = t["nll"] / jnp.maximum(t["label_length"], 1)
        return (per_char * rows).sum() / n, {
            "sum_loss": (t["nll"] * rows).sum() / n,
            "infeasible": (t["infeasible"] * rows).sum(),
        }

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="asr")}
