"""Sequence tagging (NER, chunking, POS): per-token tags `label` int [batch, seq] (-1 on padding), extra model
inputs such as `chars` passed through. The model (e.g. `bilstm_tagger`) returns tag scores float32 [batch, seq,
tags] and defines `mask(x)` (its real tokens) and `decode(x, **inputs)`.

Loss, per real token (so learning rates carry over between heads):
- softmax head (`model.crf is None`): token cross-entropy, mean over labels >= 0 (`jaxdl.losses`);
- CRF head: sum over sentences of the CRF negative log-likelihood -log p(tags | x) (`jaxdl.layers.crf`) divided
  by the number of real tokens.
Metrics: loss, token accuracy (argmax of the scores). Default evaluator: `entity_f1` (seqeval entity F1 and the
rate of invalid BIO sequences) on `config.data.eval_split`.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.losses import batch_loss
from jaxdl.tasks.base import Task as BaseTask


class Task(BaseTask):
    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        scores = model(batch["input"], train=True, rngs=rngs, **self.model_inputs(batch))
        crf = getattr(model, "crf", None)
        if crf is None:
            loss, acc = batch_loss(scores, batch)
            return loss, {"accuracy": acc}
        labels = batch["label"]
        mask = labels >= 0
        if "mask" in batch:  # padding rows
            mask = mask & (batch["mask"][:, None] > 0)
        count = jnp.maximum(mask.sum(), 1).astype(jnp.float32)
        nll = crf.nll(scores, jnp.maximum(labels, 0), mask)
        correct = ((jnp.argmax(scores, -1) == labels) & mask).sum()
        return nll.sum() / count, {"accuracy": correct / count}

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="entity_f1")}
