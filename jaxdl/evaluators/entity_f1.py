"""Entity-level precision / recall / F1 of a tagger's decoded tags with `seqeval` (CoNLL-style chunks, micro
average over entity types, default IOB2 reading), plus the token accuracy and the rate of invalid BIO sequences.

The model must define `decode(x, **model_inputs) -> int [batch, seq]` (e.g. `bilstm_tagger`: per-token argmax or
CRF Viterbi); real tokens are the labels >= 0 of the real rows. Tag names come from the dataset's label feature
(a TFDS `Sequence(ClassLabel(names=...))`, e.g. jaxdl.data.hironsan.TAGS), so ids map to "O", "B-LOC", ...

Metrics: `f1`, `precision`, `recall` (seqeval, micro), `accuracy` (tokens), `invalid_rate` (fraction of
sentences whose predicted tags break IOB2: an I-X not after B-X / I-X), `invalid_gold_rate` (the same of the gold).
"""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator
from jaxdl.layers.crf import invalid_bio


def tag_names(dataset: str, data_dir: str | None = None) -> tuple[str, ...]:
    """The label names of a tagging dataset (ValueError naming it when its label feature has none)."""
    from jaxdl import data

    feature = data.builder(dataset, data_dir).info.features["label"]
    names = getattr(getattr(feature, "feature", feature), "names", None)
    if not names:
        raise ValueError(f"dataset {dataset!r}: its label feature has no tag names (need Sequence(ClassLabel(names)))")
    return tuple(names)


def scores(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """seqeval micro precision / recall / F1 and the invalid-sequence rates of tag-string sentences."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    tokens = sum(len(s) for s in gold)
    return {
        "f1": float(f1_score(gold, pred, zero_division=0)),
        "precision": float(precision_score(gold, pred, zero_division=0)),
        "recall": float(recall_score(gold, pred, zero_division=0)),
        "accuracy": sum(g == p for gs, ps in zip(gold, pred, strict=True) for g, p in zip(gs, ps, strict=True))
        / max(tokens, 1),
        "invalid_rate": float(np.mean([invalid_bio(p) for p in pred])) if pred else 0.0,
        "invalid_gold_rate": float(np.mean([invalid_bio(g) for g in gold])) if gold else 0.0,
    }


class Evaluator(BaseEvaluator):
    """`batch_size` default: `config.data.eval_batch_size`."""

    def __init__(self, ctx: Context, *, batch_size: int = 0, **common):
        super().__init__(ctx, **common)
        self.batch_size = batch_size or ctx.config.data.eval_batch_size
        self.names = tag_names(ctx.config.data.name, ctx.config.data.data_dir or None)
        task, graphdef = ctx.task, ctx.graphdef

        def decode(params, rest, batch):
            from flax import nnx

            with ctx.trace_context():
                model = nnx.merge(graphdef, params, rest)
                if not hasattr(model, "decode"):
                    raise ValueError(f"evaluator entity_f1: model {type(model).__module__} has no decode()")
                return model.decode(batch["input"], **task.model_inputs(batch))

        self._decode = jax.jit(
            decode,
            in_shardings=(ctx.param_sharding, ctx.rest_sharding, ctx.batch_sharding),
            out_shardings=NamedSharding(ctx.mesh, PartitionSpec()),
        )

    def predictions(self, params, rest) -> tuple[list[list[str]], list[list[str]]]:
        """(gold, predicted) tag strings of every real sentence of the split, in source order."""
        gold, pred = [], []
        for batch in self.ctx.batches(self.split, self.batch_size):
            tags = np.asarray(jax.device_get(self._decode(params, rest, batch)))
            labels, rows = np.asarray(jax.device_get(batch["label"])), np.asarray(jax.device_get(batch["mask"]))
            for y, p, real in zip(labels, tags, rows, strict=True):
                if real > 0:
                    keep = y >= 0
                    gold.append([self.names[i] for i in y[keep]])
                    pred.append([self.names[i] for i in p[keep]])
        return gold, pred

    def run(self, params, rest) -> dict[str, float]:
        return scores(*self.predictions(params, rest))
