"""BERT's masked-LM corruption (Devlin et al. 2019, section 3.1) of host batches of WordPiece token ids.

`mask_tokens(ids, rng, probability=0.15)`: every non-special token is chosen independently with `probability`
(the special tokens [PAD], [UNK], [CLS], [SEP], [MASK] never are); a chosen token becomes [MASK] with probability
0.8, a random token with 0.1 and stays unchanged with 0.1. The label is the original id at chosen positions and
-1 elsewhere (jaxdl.losses ignores labels < 0, so the loss and accuracy count the chosen positions only). Random
replacement tokens are drawn uniformly from the vocabulary without the special ids, so a replacement never turns
into [PAD] (which would change the model's attention mask, jaxdl.models.language.bert derives it from id 0).

Special ids and vocabulary size come from a `Vocab`; the default `BERT_UNCASED` holds those of BERT's uncased
WordPiece vocabulary (= all-MiniLM-L6-v2's vocab.txt, which jaxdl.data.fortune_topics checks at build time):
[PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103, 30,522 tokens. `Vocab.of(tokenizer)` reads them from a
jaxdl.text.wordpiece.WordPiece. `augment(batch, rng, probability)` is the jaxdl.data.augment hook: it corrupts
batch["input"] and replaces batch["label"].
"""

from typing import NamedTuple

import numpy as np


class Vocab(NamedTuple):
    """Special token ids and the vocabulary size of a WordPiece vocabulary."""

    pad: int
    unk: int
    cls: int
    sep: int
    mask: int
    size: int

    @property
    def special_ids(self) -> tuple[int, int, int, int, int]:
        return (self.pad, self.unk, self.cls, self.sep, self.mask)

    @classmethod
    def of(cls, tokenizer) -> "Vocab":
        """The ids of a jaxdl.text.wordpiece.WordPiece tokenizer."""
        t = tokenizer
        return cls(t.pad_id, t.unk_id, t.cls_id, t.sep_id, t.mask_id, t.vocab_size)


BERT_UNCASED = Vocab(pad=0, unk=100, cls=101, sep=102, mask=103, size=30522)
MASK_FRACTION, RANDOM_FRACTION = 0.8, 0.1  # of the chosen tokens; the remaining 0.1 stay unchanged

_ORDINARY: dict[Vocab, np.ndarray] = {}


def ordinary_ids(vocab: Vocab) -> np.ndarray:
    """int32: every id of `vocab` but the special ones (the pool random replacements are drawn from)."""
    if vocab not in _ORDINARY:
        _ORDINARY[vocab] = np.setdiff1d(np.arange(vocab.size, dtype=np.int32), np.asarray(vocab.special_ids))
    return _ORDINARY[vocab]


def mask_tokens(
    ids: np.ndarray, rng: np.random.Generator, *, probability: float = 0.15, vocab: Vocab = BERT_UNCASED
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (int, any shape) -> (corrupted ids int32, labels int32: original id where chosen, else -1).
    A pure function of (ids, the generator's state)."""
    ids = np.asarray(ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"mlm: token ids must be integers, got dtype {ids.dtype}")
    if not 0 <= probability < 1:
        raise ValueError(f"config.data.augment.mlm_probability must be in [0, 1), got {probability}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab.size):
        raise ValueError(f"mlm: token ids must be in [0, {vocab.size}), got [{ids.min()}, {ids.max()}]")
    ids = ids.astype(np.int32)
    chosen = ~np.isin(ids, vocab.special_ids) & (rng.random(ids.shape) < probability)
    roll = rng.random(ids.shape)  # one draw per position, so the masks do not depend on how many were chosen
    to_mask = chosen & (roll < MASK_FRACTION)
    to_random = chosen & (roll >= MASK_FRACTION) & (roll < MASK_FRACTION + RANDOM_FRACTION)
    pool = ordinary_ids(vocab)
    random_tokens = pool[rng.integers(0, len(pool), size=ids.shape)]
    out = np.where(to_mask, np.int32(vocab.mask), np.where(to_random, random_tokens, ids)).astype(np.int32)
    return out, np.where(chosen, ids, -1).astype(np.int32)


def augment(batch: dict[str, np.ndarray], rng: np.random.Generator, probability: float) -> dict[str, np.ndarray]:
    """The batch with "input" corrupted and "label" replaced by the masked-LM targets."""
    x, labels = mask_tokens(batch["input"], rng, probability=probability)
    return dict(batch, input=x, label=labels)
