"""Translation evaluator: greedy or beam-search decoding of an encoder-decoder over a split, scored by exact match
and corpus BLEU (sacrebleu).

Spec: `dict(kind="translate", decoder="greedy"|"beam", beam_size=4, alpha=0.6, limit=0, batch_size=250,
bleu_tokenize="13a")`. The model needs `init_cache` / `decode_step` / `pad_id` / `bos_id` / `eos_id`
(`jaxdl.decode.greedy_decode`); targets and outputs are compared up to their first EOS. Text for BLEU: token ids
< 256 are UTF-8 bytes (the byte vocabularies of `jaxdl.data.translation`), cut at the first special id.
Metrics: exact_match (fraction of the `limit` first examples, 0 = all), bleu (0-100), examples.
"""

import numpy as np

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator

DECODERS = ("greedy", "beam")


def exact_match(pred, label, eos_id: int):
    """pred int [batch, Tp] (generated: tokens, EOS, anything), label int [batch, T] (target, EOS, -1 padding) ->
    bool [batch]: the prediction up to and including its first EOS equals the label up to its EOS."""
    import jax.numpy as jnp

    if pred.ndim != 2 or label.ndim != 2 or pred.shape[0] != label.shape[0]:
        raise ValueError(
            f"exact_match: expected pred [batch, Tp] and label [batch, T], got {pred.shape}, {label.shape}"
        )

    def upto_eos(x):  # everything after the first EOS -> -1
        eos = (x == eos_id).astype(jnp.int32)
        return jnp.where(jnp.cumsum(eos, axis=1) - eos > 0, -1, x)

    n = max(pred.shape[1], label.shape[1])
    pad = lambda x: jnp.pad(upto_eos(jnp.asarray(x, jnp.int32)), ((0, 0), (0, n - x.shape[1])), constant_values=-1)
    return jnp.all(pad(pred) == pad(label), axis=1)


def byte_text(ids) -> str:
    """Byte token ids up to the first special (id >= 256, or < 0) as text."""
    ids = [int(i) for i in ids]
    end = next((k for k, i in enumerate(ids) if not 0 <= i < 256), len(ids))
    return bytes(ids[:end]).decode("utf-8", errors="replace")


def corpus_bleu(hypotheses: list[str], references: list[str], tokenize: str = "13a") -> float:
    """sacrebleu's corpus BLEU (0-100) of one reference per hypothesis."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(hypotheses, [references], tokenize=tokenize).score)


class Evaluator(BaseEvaluator):
    def __init__(
        self,
        ctx: Context,
        *,
        decoder: str = "greedy",
        beam_size: int = 4,
        alpha: float = 0.6,
        limit: int = 0,
        batch_size: int = 250,
        bleu_tokenize: str = "13a",
        **common,
    ):
        super().__init__(ctx, **common)
        if decoder not in DECODERS:
            raise ValueError(f"decoder={decoder!r}: expected one of {DECODERS}")
        if beam_size < 1 or batch_size < 1 or limit < 0:
            raise ValueError(f"beam_size={beam_size}, batch_size={batch_size} must be >= 1 and limit={limit} >= 0")
        self.decoder, self.beam_size, self.alpha = decoder, beam_size, alpha
        self.limit, self.batch_size, self.bleu_tokenize = limit, batch_size, bleu_tokenize
        self.errors: list[dict] = []  # up to 10 wrong outputs of the last run (source, target, output)

    def decode(self, model, source, max_len: int) -> np.ndarray:
        from jaxdl.decode import beam_decode, greedy_decode

        if self.decoder == "greedy":
            return np.asarray(greedy_decode(model, source, max_len))
        return np.asarray(beam_decode(model, source, max_len, beam_size=self.beam_size, alpha=self.alpha))

    def run(self, params, rest) -> dict[str, float]:
        import jax.numpy as jnp

        from jaxdl import data

        model = self.merged(params, rest)
        if not hasattr(model, "decode_step"):
            raise ValueError(f"the translate evaluator needs an encoder-decoder with decode_step; got {type(model)}")
        cfg = self.ctx.config
        source = self.ctx.source(self.split)
        n = min(len(source), self.limit) if self.limit else len(source)
        hits, hyps, refs, self.errors = 0, [], [], []
        for start in range(0, n, self.batch_size):
            rows = source.__getitems__(list(range(start, min(start + self.batch_size, n))))
            batch = data.preprocess(cfg.data.name, {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]})
            label = batch["label"]
            pred = self.decode(model, jnp.asarray(batch["input"]), label.shape[1])
            ok = np.asarray(exact_match(pred, label, model.eos_id))
            hits += int(ok.sum())
            for i in range(len(rows)):
                hyps.append(byte_text(pred[i]))
                refs.append(byte_text(label[i]))
                if not ok[i] and len(self.errors) < 10:
                    self.errors.append({"source": byte_text(batch["input"][i]), "target": refs[-1], "output": hyps[-1]})
        return {"exact_match": hits / n, "bleu": corpus_bleu(hyps, refs, self.bleu_tokenize), "examples": float(n)}
