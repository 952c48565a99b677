"""Language-model metrics over every label of a split: loss (nats per label), perplexity = exp(loss),
bits per `unit` = loss / ln 2 (`unit="byte"` for byte-level corpora, where a label is one byte), accuracy."""

import math

from jaxdl.evaluators.classify import Evaluator as ClassifyEvaluator


class Evaluator(ClassifyEvaluator):
    def __init__(self, ctx, *, unit: str = "token", **common):
        super().__init__(ctx, **common)
        if not unit.isidentifier():
            raise ValueError(f"unit={unit!r}: expected a word such as 'token' or 'byte' (it names the metric)")
        self.unit = unit

    def run(self, params, rest) -> dict[str, float]:
        s = self.sums(params, rest)
        loss = float(s["loss_sum"] / s["count"])
        return {
            "loss": loss,
            "perplexity": math.exp(loss),
            f"bits_per_{self.unit}": loss / math.log(2),
            "accuracy": float(s["correct"] / s["count"]),
        }
