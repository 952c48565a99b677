"""Speech recognition evaluator: decodes a CTC model's outputs over a split (greedy, prefix beam search, or beam
search with a character n-gram LM by shallow fusion; `jaxdl.audio.ctc_decode`) and scores character and word
error rates with `jiwer` (edit distance / reference length, summed over the split).

Spec: `dict(kind="asr", decoder="greedy"|"beam"|"beam_lm", beam_size=8, lm_order=5, lm_smoothing="kn",
lm_weight=0.5, length_bonus=1.0, token_min_logp=-12.0, batch_size=0)`. The LM is fitted on the transcripts of
`config.data.train_split` (never the evaluated split), each followed by the word boundary (space). The model needs
`log_probs(x, input_length) -> (log-probs [batch, frames, classes], real frames [batch])`; id → character comes
from the dataset's label names (a TFDS `Sequence(ClassLabel(names))` with "<blank>" at the blank id and "<space>"
for the space, e.g. jaxdl.data.asterisk.LABEL_NAMES).
Metrics: cer, wer (fractions), examples.
"""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxdl.audio import ctc_decode
from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator

DECODERS = ("greedy", "beam", "beam_lm")


def error_rates(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """{"cer", "wer"}: jiwer's corpus character / word error rates (total edits / total reference length)."""
    import jiwer

    if not references or len(references) != len(hypotheses):
        raise ValueError(f"error_rates: {len(references)} references vs {len(hypotheses)} hypotheses")
    if any(not r.strip() for r in references):
        raise ValueError("error_rates: an empty reference transcript (CER/WER undefined)")
    return {"cer": float(jiwer.cer(references, hypotheses)), "wer": float(jiwer.wer(references, hypotheses))}


def label_chars(dataset: str, data_dir: str | None = None) -> tuple[str, ...]:
    """id → character of a CTC dataset's label names ("<blank>" → "", "<space>" → " ")."""
    from jaxdl import data

    feature = data.builder(dataset, data_dir).info.features["label"]
    names = getattr(getattr(feature, "feature", feature), "names", None)
    if not names or names[0] != "<blank>":
        raise ValueError(f"dataset {dataset!r}: its label names must start with '<blank>' (got {names and names[:3]})")
    return tuple({"<blank>": "", "<space>": " "}.get(n, n) for n in names)


def fit_lm(label_rows, vocab_size: int, boundary: int, order: int, smoothing: str):
    """A character NGramLM over label ids fitted on rows of int [max_label] (-1 padding): the transcripts, each
    followed by the boundary id."""
    from jaxdl.text.ngram import NGramLM

    ids = [boundary]
    for row in label_rows:
        row = np.asarray(row)
        ids.extend(row[row >= 0].tolist() + [boundary])
    return NGramLM(order, vocab_size, smoothing).fit(np.array(ids, np.int64))


class Evaluator(BaseEvaluator):
    """`batch_size` default: `config.data.eval_batch_size`."""

    def __init__(
        self,
        ctx: Context,
        *,
        decoder: str = "greedy",
        beam_size: int = 8,
        lm_order: int = 5,
        lm_smoothing: str = "kn",
        lm_weight: float = 0.5,
        length_bonus: float = 1.0,
        token_min_logp: float = -12.0,
        batch_size: int = 0,
        **common,
    ):
        super().__init__(ctx, **common)
        if decoder not in DECODERS:
            raise ValueError(f"decoder={decoder!r}: expected one of {DECODERS}")
        if beam_size < 1 or lm_order < 1:
            raise ValueError(f"beam_size={beam_size} and lm_order={lm_order} must be >= 1")
        self.decoder, self.beam_size, self.token_min_logp = decoder, beam_size, token_min_logp
        self.lm_weight, self.length_bonus = lm_weight, length_bonus
        self.batch_size = batch_size or ctx.config.data.eval_batch_size
        self.chars = label_chars(ctx.config.data.name, ctx.config.data.data_dir or None)
        if " " not in self.chars:
            raise ValueError(f"dataset {ctx.config.data.name!r} has no '<space>' label (the LM's word boundary)")
        self.boundary = self.chars.index(" ")
        self.lm = None
        if decoder == "beam_lm":
            from jaxdl.data.memory import read

            src = ctx.source(ctx.config.data.train_split)
            labels = read(src, range(len(src)))["label"]
            self.lm = fit_lm(labels, len(self.chars), self.boundary, lm_order, lm_smoothing)
        self.last: list[tuple[str, str]] = []  # (reference, hypothesis) of the last run, in source order
        graphdef = ctx.graphdef

        def log_probs(params, rest, batch):
            from flax import nnx

            with ctx.trace_context():
                model = nnx.merge(graphdef, params, rest)
                if not hasattr(model, "log_probs"):
                    raise ValueError(f"evaluator asr: model {type(model).__module__} has no log_probs()")
                return model.log_probs(batch["input"], batch["input_length"])

        self._log_probs = jax.jit(
            log_probs,
            in_shardings=(ctx.param_sharding, ctx.rest_sharding, ctx.batch_sharding),
            out_shardings=NamedSharding(ctx.mesh, PartitionSpec()),
        )

    def text(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids if int(i) >= 0)

    def transcribe(self, log_probs: np.ndarray) -> str:
        """One utterance's real frames float [frames, classes] → text by this evaluator's decoder."""
        ids = ctc_decode.decode(
            log_probs,
            self.decoder,
            self.beam_size,
            0,
            self.lm,
            self.lm_weight,
            self.length_bonus,
            self.boundary,
            self.token_min_logp,
        )
        return self.text(ids)

    def run(self, params, rest) -> dict[str, float]:
        refs, hyps = [], []
        for batch in self.ctx.batches(self.split, self.batch_size):
            lp, n = jax.device_get(self._log_probs(params, rest, batch))
            labels, rows = np.asarray(jax.device_get(batch["label"])), np.asarray(jax.device_get(batch["mask"]))
            for y, p, k, real in zip(labels, np.asarray(lp), np.asarray(n), rows, strict=True):
                if real > 0:
                    refs.append(self.text(y))
                    hyps.append(self.transcribe(p[: int(k)]))
        self.last = list(zip(refs, hyps, strict=True))
        return {**error_rates(refs, hyps), "examples": float(len(refs))}
