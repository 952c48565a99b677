"""Offline text corpora for language modelling, as TFDS array_record builders of fixed-length byte windows.

Corpora (all offline):
- `pydoc`: CPython's `pydoc_data.topics` (the help() topic texts that ship with Python; ~492k characters on
  3.12): the dict values joined in sorted key order, cut into paragraphs (blocks separated by a blank line).
  The text depends on the Python version that builds the dataset.
- `fortunes`: Debian's `fortunes` package (/usr/share/games/fortunes, or $JAXDL_FORTUNES_DIR): the plain fortune
  files in sorted name order (not the .dat indexes nor the .u8 links), each fortune ended by a line `%`;
  ~15k fortunes, ~2.6 MB.

Splits (fixed, deterministic): the documents (paragraphs / fortunes) are shuffled with
`np.random.default_rng(SPLIT_SEED)` and cut into contiguous ranges: the first 90 % of the documents are
`train`, the next 5 % `valid`, the rest `test`. A split's text is its documents in that order, each followed by
the corpus separator (a blank line for pydoc, a `%` line for fortunes): `split_text(corpus, split)`.

Examples (byte level): the split text encoded as UTF-8 and cut into windows of `seq_len + 1` bytes with stride
`seq_len` (consecutive windows share one byte, so every byte but the first is predicted once; the tail shorter
than a window is dropped). Stored as `input` uint8 [seq_len] (bytes 0..seq_len-1 of the window) and `label`
int [seq_len] in [0, 256) (bytes 1..seq_len): the next byte at every position, so that `registry.info` reads
`num_classes` = 256 and `input_shape` = (seq_len,). `preprocess` gives {"input": int32 [batch, seq_len],
"label": int32 [batch, seq_len]}. Builder configs: `bytes128`, `bytes256` (seq_len 128, 256).
"""

import os

import numpy as np
import tensorflow_datasets as tfds

SPLIT_SEED = 0
SPLIT_FRACTIONS = {"train": 0.90, "valid": 0.05, "test": 0.05}
SPLITS = tuple(SPLIT_FRACTIONS)
CORPORA = ("pydoc", "fortunes")
SEPARATORS = {"pydoc": "\n\n", "fortunes": "%\n"}
FORTUNES_DIR = "/usr/share/games/fortunes"


def fortunes_dir() -> str:
    """The folder with the plain fortune files; FileNotFoundError saying how to get them if it has none."""
    folder = os.environ.get("JAXDL_FORTUNES_DIR", FORTUNES_DIR)
    if not _fortune_files(folder):
        raise FileNotFoundError(
            f"no fortune files found in {folder}. Install them with `apt-get install fortunes` (Debian/Ubuntu), "
            "or set JAXDL_FORTUNES_DIR to a folder of fortune files (fortunes separated by lines holding only %)."
        )
    return folder


def _fortune_files(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        return []
    names = sorted(os.listdir(folder))
    paths = [os.path.join(folder, n) for n in names if not n.endswith((".dat", ".u8"))]
    return [p for p in paths if os.path.isfile(p) and not os.path.islink(p)]


def _pydoc_documents() -> list[str]:
    from pydoc_data import topics

    text = "".join(topics.topics[k] for k in sorted(topics.topics))
    return [p.strip("\n") for p in text.split("\n\n") if p.strip()]


def _fortune_documents() -> list[str]:
    docs = []
    for path in _fortune_files(fortunes_dir()):
        with open(path, encoding="utf-8") as f:
            lines = f.read().replace("\r\n", "\n").split("\n")
        current: list[str] = []
        for line in lines + ["%"]:  # the last fortune of a file has no closing `%`
            if line == "%":
                body = "\n".join(current).strip("\n")
                if body.strip():
                    docs.append(body + "\n")
                current = []
            else:
                current.append(line)
    return docs


def documents(corpus: str) -> list[str]:
    """The documents of `corpus` in source order: pydoc paragraphs or fortunes (each ending with a newline)."""
    if corpus == "pydoc":
        return _pydoc_documents()
    if corpus == "fortunes":
        return _fortune_documents()
    raise ValueError(f"corpus {corpus!r} is unknown; known: {', '.join(CORPORA)}")


def split_documents(corpus: str) -> dict[str, list[str]]:
    """{split: documents}: a seeded shuffle of `documents(corpus)` cut 90/5/5 into contiguous ranges."""
    docs = documents(corpus)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(docs))
    n_train = round(SPLIT_FRACTIONS["train"] * len(docs))
    n_valid = round(SPLIT_FRACTIONS["valid"] * len(docs))
    bounds = {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n_train + n_valid, len(docs))}
    return {s: [docs[i] for i in order[a:b]] for s, (a, b) in bounds.items()}


def split_text(corpus: str, split: str) -> str:
    """The raw text of one split (what the byte windows of that split are cut from)."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is unknown; splits: {', '.join(SPLITS)}")
    docs = split_documents(corpus)[split]
    return "".join(d + SEPARATORS[corpus] for d in docs)


def byte_windows(text: str, seq_len: int) -> np.ndarray:
    """uint8 [num_windows, seq_len + 1]: the UTF-8 bytes of `text` in windows of seq_len + 1 with stride seq_len."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    data = np.frombuffer(text.encode("utf-8"), np.uint8)
    n = (len(data) - 1) // seq_len
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    return data[idx]


class _TextConfig(tfds.core.BuilderConfig):
    def __init__(self, *, seq_len: int, **kwargs):
        super().__init__(**kwargs)
        self.seq_len = seq_len


_CONFIGS = [_TextConfig(name=f"bytes{n}", seq_len=n, description=f"byte windows of {n} + 1") for n in (128, 256)]


class _ByteWindows(tfds.core.GeneratorBasedBuilder):
    """Shared builder body; subclasses set CORPUS."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = _CONFIGS
    CORPUS = ""

    def _info(self) -> tfds.core.DatasetInfo:
        n = self.builder_config.seq_len
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "input": tfds.features.Tensor(shape=(n,), dtype=np.uint8),
                    "label": tfds.features.Sequence(tfds.features.ClassLabel(num_classes=256), length=n),
                }
            ),
            supervised_keys=("input", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # offline
        texts = {s: split_text(self.CORPUS, s) for s in SPLITS}
        return {s: self._generate_examples(texts[s]) for s in SPLITS}

    def _generate_examples(self, text):
        windows = byte_windows(text, self.builder_config.seq_len)
        for i, w in enumerate(windows):
            yield i, {"input": w[:-1], "label": w[1:].astype(np.int64)}


class PydocBytes(_ByteWindows):
    """CPython pydoc_data topics as byte windows (see the module docstring)."""

    CORPUS = "pydoc"


class FortunesBytes(_ByteWindows):
    """Debian fortunes as byte windows (see the module docstring)."""

    CORPUS = "fortunes"


def preprocess(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stacked raw examples -> {"input": int32 [batch, seq_len] bytes, "label": int32 [batch, seq_len] next bytes}."""
    return {"input": examples["input"].astype(np.int32), "label": examples["label"].astype(np.int32)}
