"""Image <-> text retrieval recall@1/5 of a contrastive image–text model over the first `size` pairs of a split.

Each image's query ranks the `size` captions by cosine (and each caption ranks the images); recall@k is the
fraction of queries with a relevant item in the top k. Captions here are generated from class descriptions, so
identical strings recur; relevance is reported two ways:
  - `caption`: the retrieved item's caption is the same string as the query's paired caption (the pair itself
    or an indistinguishable copy): metrics `i2t_r1`, `i2t_r5`, `t2i_r1`, `t2i_r5`;
  - `class`: the retrieved item is of the query's class: `class_i2t_r1`, ... .
Chance of recall@1 is reported for both (`chance_r1`: mean fraction of relevant items per query, caption match;
`chance_class_r1`: the same for class match).
"""

import numpy as np

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator
from jaxdl.evaluators.zero_shot import Embedder

KS = (1, 5)


def recall_at_k(similarity: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Fraction of queries (rows of `similarity` [q, g]) with a `relevant` (bool [q, g]) item among their k most
    similar gallery items (ties broken by gallery order)."""
    if similarity.shape != relevant.shape:
        raise ValueError(f"similarity {similarity.shape} and relevant {relevant.shape} differ in shape")
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.take_along_axis(relevant, top, axis=1).any(axis=1)))


def recalls(image_emb, text_emb, texts, labels, prefix: str = "") -> dict[str, float]:
    """recall@{1,5} both ways for caption and class relevance (see the module docstring)."""
    sim = image_emb @ text_emb.T
    same_caption = np.all(texts[:, None, :] == texts[None, :, :], axis=-1)
    same_class = labels[:, None] == labels[None, :]
    out = {}
    for tag, rel in (("", same_caption), ("class_", same_class)):
        for k in KS:
            out[f"{prefix}{tag}i2t_r{k}"] = recall_at_k(sim, rel, k)
            out[f"{prefix}{tag}t2i_r{k}"] = recall_at_k(sim.T, rel.T, k)
        out[f"{prefix}chance_{tag}r1"] = float(rel.mean())
    return out


class Evaluator(BaseEvaluator):
    """Options: `size` (pairs ranked, default 1000), `batch_size` (default config.data.eval_batch_size)."""

    def __init__(self, ctx: Context, *, size: int = 1000, batch_size: int = 0, **common):
        super().__init__(ctx, **common)
        if size < 5:
            raise ValueError(f"evaluator retrieval: size={size} must be >= 5 (recall@5)")
        self.size, self.batch_size = size, batch_size or ctx.config.data.eval_batch_size
        self.embedder = Embedder(ctx)

    def run(self, params, rest) -> dict[str, float]:
        d = self.embedder.split(params, rest, self.split, self.batch_size, limit=self.size, texts=True)
        if len(d["label"]) < self.size:
            raise ValueError(f"evaluator retrieval: split {self.split!r} has {len(d['label'])} < size={self.size}")
        return recalls(d["image"], d["text_emb"], d["text"], d["label"])
