"""Masked language modelling (BERT): cross-entropy at the masked positions only.

Batch: `input` int32 [batch, seq] token ids with the chosen positions replaced (80 % [MASK], 10 % random, 10 %
kept: `config.data.augment.mlm_probability`, `jaxdl.data.mlm`), `label` int32 [batch, seq] the original id at the
chosen positions and -1 elsewhere, so the mean runs over the chosen positions. Default evaluator: perplexity
(masked-token loss, perplexity, accuracy) on the eval split, masked the same way.
"""

from jaxdl.tasks.classify import Task as ClassifyTask


class Task(ClassifyTask):
    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="perplexity")}
