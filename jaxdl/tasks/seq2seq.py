"""Sequence-to-sequence (translation): teacher-forced cross-entropy of an encoder-decoder.

Batch: `input` int32 [batch, S] (source, padded), `target_in` int32 [batch, T] (BOS + target shifted right, a
model input), `label` int32 [batch, T] (target + EOS, -1 padding). Metrics: loss, token accuracy. Default
evaluator: token accuracy and loss; add `kind="translate"` evaluators (greedy / beam exact match, BLEU) in
`config.evals` for decoded outputs.
"""

from jaxdl.tasks.classify import Task as ClassifyTask


class Task(ClassifyTask):
    batch_keys = ("input", "target_in", "label")
