"""Asterisk core sounds (English): real recorded speech of one professional speaker with transcripts.

Source: Debian packages `asterisk-core-sounds-en-wav` (568 WAV files, 8 kHz 16-bit mono, ~25.5 min, under
/usr/share/asterisk/sounds/en_US_f_Allison) and `asterisk-core-sounds-en` (its transcripts,
/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz, one `name: text` line per prompt). Install with

    apt-get install -y asterisk-core-sounds-en-wav asterisk-core-sounds-en

(`launch/setup.sh` does). Licence, from /usr/share/doc/asterisk-core-sounds-en-wav/copyright: "Copyright:
2003-2010, Allison Smith … Recorded by: Allison Smith (http://www.theivrvoice.com). Financial Contributions by:
Digium, Inc. … License: CC-BY-SA-3.0" (Creative Commons Attribution-ShareAlike 3.0; attribute Allison Smith /
Digium; derived audio shares alike). Nothing is redistributed here: the files are read where Debian put them.

Transcripts are normalised to the character vocabulary VOCAB (space, apostrophe, a–z): lower case; `[...]`,
`(...)` and `<...>` notes dropped (non-speech descriptions such as "[ascending tones]", "(1 second of silence)",
"(note: does not say "2")"); "*" → "star", "#" → "pound"; a lone digit → its word ("press 1" → "press one");
"A.M." → "a m"; hyphens and slashes → spaces; other punctuation removed. A prompt whose normalised text still
holds a digit (multi-digit numbers such as "1234" or "28.8", and "3D", "H.323", whose reading is ambiguous) or is
empty (beeps, tones, silence) is left out; `corpus(..., with_dropped=True)` also returns those with the reason.

Splits (`split_names`): prompts are grouped by normalised text (several files share one text), the groups are
shuffled with SPLIT_SEED and TEST_FRACTION of the *sentence* groups (two or more words) go to `test`; every
single-word prompt (digits, letters, phonetic alphabet …) stays in `train`. So no test transcript is ever heard in
training, and the test set measures recognition of unseen sentences built from seen words and characters.
"""

import gzip
import os
import re

import numpy as np
import tensorflow_datasets as tfds

ROOT = "/usr/share/asterisk/sounds/en_US_f_Allison"
TRANSCRIPTS = "/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
INSTALL = "apt-get install -y asterisk-core-sounds-en-wav asterisk-core-sounds-en"
SAMPLE_RATE = 8000
VOCAB = " 'abcdefghijklmnopqrstuvwxyz"  # CTC ids: blank = 0, VOCAB[i] = i + 1
BLANK = 0
SPLIT_SEED, TEST_FRACTION = 0, 0.15

_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def normalize(text: str) -> str:
    """A transcript line's text → lower-case words over VOCAB ('' for non-speech); may keep digits (see above)."""
    t = re.sub(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>", " ", text)
    t = t.replace("*", " star ").replace("#", " pound ")
    t = re.sub(r"\b([A-Za-z])\.(?=[A-Za-z]\.)", r"\1 ", t)  # A.M. -> A M.
    t = re.sub(r"(?<![\w.])(\d)(?![\w.])", lambda m: " " + _DIGITS[int(m.group(1))] + " ", t)
    t = t.lower().replace("-", " ").replace("/", " ")
    t = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", t)  # keep a decimal point inside a number (dropped below)
    t = re.sub(r"[^a-z0-9.' ]", " ", t)
    t = re.sub(r"(^|\s)'+|'+(?=\s|$)", " ", t)  # quotes, not apostrophes
    return " ".join(t.split())


def _paths(root: str | None, transcripts: str | None) -> tuple[str, str]:
    root = root or os.environ.get("JAXDL_ASTERISK_ROOT") or ROOT
    transcripts = transcripts or os.environ.get("JAXDL_ASTERISK_TRANSCRIPTS") or TRANSCRIPTS
    for path, what in ((root, "WAV directory"), (transcripts, "transcript file")):
        if not os.path.exists(path):
            raise FileNotFoundError(f"asterisk {what} {path} is missing; install it with `{INSTALL}`")
    return root, transcripts


def read_transcripts(path: str) -> dict[str, str]:
    """core-sounds-en.txt(.gz) → {name: raw text}; a non-comment line without `name: ` raises naming the line."""
    opener = gzip.open if path.endswith(".gz") else open
    out = {}
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith(";"):
                continue
            name, sep, text = line.partition(":")
            if not sep or not name.strip():
                raise ValueError(f"{path} line {lineno}: expected `name: text`, got {line[:60]!r}")
            out[name.strip()] = text.strip()
    return out


def corpus(root: str | None = None, *, transcripts: str | None = None, with_dropped: bool = False):
    """The usable utterances, sorted by name: [(wav_path, normalised transcript), ...] (547 of the 568 files).

    `root` is the WAV directory (default ROOT or $JAXDL_ASTERISK_ROOT), `transcripts` the `name: text` file.
    Names with a transcript but no WAV (one) are ignored; a WAV without a transcript raises naming it.
    With `with_dropped=True` returns (kept, dropped) where dropped = [(wav_path, raw text, reason), ...].
    """
    root, transcripts = _paths(root, transcripts)
    texts = read_transcripts(transcripts)
    wavs = sorted(
        os.path.relpath(os.path.join(d, f), root)[: -len(".wav")]
        for d, _, files in os.walk(root)
        for f in files
        if f.endswith(".wav")
    )
    if not wavs:
        raise FileNotFoundError(f"no .wav files under {root}; install them with `{INSTALL}`")
    kept, dropped = [], []
    for name in wavs:
        path = os.path.join(root, name + ".wav")
        if name not in texts:
            raise ValueError(f"{path}: no transcript named {name!r} in {transcripts}")
        text = normalize(texts[name])
        if not text:
            dropped.append((path, texts[name], "no speech in the transcript"))
        elif re.search(r"\d", text):
            dropped.append((path, texts[name], "a number whose reading is ambiguous"))
        else:
            kept.append((path, text))
    return (kept, dropped) if with_dropped else kept


def encode_text(text: str, where: str = "transcript") -> np.ndarray:
    """Transcript → int32 [len] CTC label ids (VOCAB index + 1); an empty text or a character outside VOCAB raises
    ValueError naming `where` (e.g. the WAV file) and the character."""
    if not text:
        raise ValueError(f"{where}: empty transcript")
    bad = sorted(set(text) - set(VOCAB))
    if bad:
        raise ValueError(f"{where}: character(s) {bad} are not in the vocabulary {VOCAB!r}")
    return np.array([VOCAB.index(c) + 1 for c in text], np.int32)


def decode_ids(ids) -> str:
    """Label ids (no blanks) → text."""
    return "".join(VOCAB[int(i) - 1] for i in ids)


def split_names(items: list[tuple[str, str]]) -> dict[str, list[int]]:
    """{"train", "test"}: indices into `items` (corpus() output); see the module docstring for the rule."""
    groups = sorted({text for _, text in items if " " in text})
    order = np.random.default_rng(SPLIT_SEED).permutation(len(groups))
    test_texts = {groups[i] for i in order[: round(TEST_FRACTION * len(groups))]}
    test = [i for i, (_, text) in enumerate(items) if text in test_texts]
    train = [i for i, (_, text) in enumerate(items) if text not in test_texts]
    return {"train": train, "test": test}


# --------------------------------------------------------------------------------------------- TFDS builder
MAX_SECONDS = 5.0  # utterances up to 5 s: 499 of the 547 (461 train, 38 test); longer menus would dominate the
# padded compute of every batch (the trainer's shapes are fixed), 2.4x the cost for 8 % more audio
MAX_SAMPLES = int(MAX_SECONDS * SAMPLE_RATE)
MAX_LABEL = 128  # characters (checked while building)
LABEL_NAMES = ("<blank>", *("<space>" if c == " " else c for c in VOCAB))


def examples(root: str | None = None, *, transcripts: str | None = None) -> dict[str, list[dict]]:
    """{"train", "test"}: the stored features of every utterance of at most MAX_SECONDS, in corpus order.

    Each WAV goes through `jaxdl.audio.wav.read_wav` (a wrong sample rate / channel count / width raises naming
    the file) and each transcript through `encode_text` (an empty one or a character outside VOCAB raises naming
    the file)."""
    from jaxdl.audio.wav import read_wav

    items = corpus(root, transcripts=transcripts)
    out = {}
    for split, indices in split_names(items).items():
        rows = []
        for i in indices:
            path, text = items[i]
            audio = read_wav(path, SAMPLE_RATE)
            if len(audio) > MAX_SAMPLES:
                continue
            label = encode_text(text, path)
            if len(label) > MAX_LABEL:
                raise ValueError(f"{path}: transcript of {len(label)} characters exceeds MAX_LABEL={MAX_LABEL}")
            pcm = np.zeros(MAX_SAMPLES, np.int16)
            pcm[: len(audio)] = np.round(audio * 32768.0).astype(np.int16)
            y = np.full(MAX_LABEL, -1, np.int64)
            y[: len(label)] = label
            rows.append(
                {
                    "audio": pcm,
                    "num_samples": np.int32(len(audio)),
                    "label": y,
                    "label_length": np.int32(len(label)),
                    "index": np.int32(i),
                }
            )
        out[split] = rows
    return out


class AsteriskSpeech(tfds.core.GeneratorBasedBuilder):
    """Asterisk English prompts (one speaker, 8 kHz) for CTC character recognition; see the module docstring.

    Features: audio int16 [MAX_SAMPLES] (zero padded), num_samples int32, label [MAX_LABEL] CTC ids (VOCAB index
    + 1; -1 on padding), label_length int32, index int32 (position in `corpus()`)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "audio": tfds.features.Tensor(shape=(MAX_SAMPLES,), dtype=np.int16),
                    "num_samples": tfds.features.Scalar(dtype=np.int32),
                    "label": tfds.features.Sequence(tfds.features.ClassLabel(names=LABEL_NAMES), length=MAX_LABEL),
                    "label_length": tfds.features.Scalar(dtype=np.int32),
                    "index": tfds.features.Scalar(dtype=np.int32),
                }
            ),
            supervised_keys=("audio", "label"),
            homepage="https://downloads.asterisk.org/pub/telephony/sounds/",
            license="CC-BY-SA-3.0 (recorded by Allison Smith, financed by Digium, Inc.)",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # offline: the Debian packages' files
        return {split: self._generate_examples(rows) for split, rows in examples().items()}

    def _generate_examples(self, rows):
        for row in rows:
            yield int(row["index"]), row


def preprocess(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stacked raw examples → {"input": float32 [b, MAX_SAMPLES] waveform in [-1, 1), "input_length": int32 [b]
    samples, "label": int32 [b, MAX_LABEL] CTC ids, -1 on padding}."""
    return {
        "input": examples["audio"].astype(np.float32) / 32768.0,
        "input_length": examples["num_samples"].astype(np.int32),
        "label": examples["label"].astype(np.int32),
    }
