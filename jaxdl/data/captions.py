"""Captions from class descriptions: templates over names, synonyms, attributes and WordNet glosses, with a
guard that keeps forbidden (held-out) class names out of every caption a training image gets.

WordNet glosses are read straight from the database files of Debian's `wordnet-base` package
(/usr/share/wordnet/index.noun + data.noun, or $JAXDL_WORDNET_DIR): `index.noun` maps a lemma to its synset byte
offsets in sense order, and the line at that offset of `data.noun` ends with "| gloss; "example"". The format is
tiny and stable (wndb(5WN)), so a 20-line reader replaces an NLTK dependency and its separate corpus download.

Captions are byte strings for a byte-level text encoder: `encode(text, length)` -> uint8 [length], 0-padded (byte
0 never occurs in the text, so 0 is the padding id).
"""

import dataclasses
import functools
import os
import re
from collections.abc import Iterable, Sequence

import numpy as np

WORDNET_DIR = "/usr/share/wordnet"


def wordnet_dir() -> str:
    """The folder with index.noun/data.noun; FileNotFoundError with the install command if it is missing."""
    folder = os.environ.get("JAXDL_WORDNET_DIR", WORDNET_DIR)
    missing = [f for f in ("index.noun", "data.noun") if not os.path.exists(os.path.join(folder, f))]
    if missing:
        raise FileNotFoundError(
            f"WordNet files {missing} not found in {folder}: install them with `apt-get install wordnet-base` "
            "(Debian/Ubuntu) or set JAXDL_WORDNET_DIR to a folder holding index.noun and data.noun"
        )
    return folder


@functools.cache
def _noun_index(folder: str) -> dict[str, list[int]]:
    """lemma -> synset byte offsets in data.noun, most frequent sense first."""
    index = {}
    with open(os.path.join(folder, "index.noun"), encoding="utf-8") as f:
        for line in f:
            if line.startswith(" "):  # the licence header lines start with two spaces
                continue
            fields = line.split()
            pointers = int(fields[3])
            index[fields[0]] = [int(o) for o in fields[4 + pointers + 2 :]]
    return index


def wordnet_gloss(lemma: str, sense: int = 1) -> str:
    """The definition part of the WordNet gloss of noun `lemma` (spaces as "_"), sense `sense` (1-based), without
    the quoted examples; ValueError naming the lemma/sense when WordNet lacks it."""
    folder = wordnet_dir()
    offsets = _noun_index(folder).get(lemma.lower())
    if not offsets:
        raise ValueError(f"WordNet has no noun {lemma!r} (in {folder}/index.noun)")
    if not 1 <= sense <= len(offsets):
        raise ValueError(f"WordNet noun {lemma!r} has {len(offsets)} senses, asked for sense {sense}")
    with open(os.path.join(folder, "data.noun"), "rb") as f:
        f.seek(offsets[sense - 1])
        line = f.readline().decode("utf-8")
    gloss = line.split("|", 1)[1].strip()
    definition = [part.strip() for part in gloss.split(";") if part.strip() and not part.strip().startswith('"')]
    return re.sub(r"^\(usually in the plural\)\s*", "", "; ".join(definition))


@dataclasses.dataclass(frozen=True)
class ClassText:
    """What may be said about one class: `names` (the first is the canonical one; the rest synonyms),
    `attributes` (short phrases, e.g. "with long sleeves"), `wordnet` ((lemma, sense) pairs whose glosses are
    read from WordNet)."""

    names: tuple[str, ...]
    attributes: tuple[str, ...] = ()
    wordnet: tuple[tuple[str, int], ...] = ()

    def glosses(self) -> tuple[str, ...]:
        return tuple(wordnet_gloss(lemma, sense) for lemma, sense in self.wordnet)


# {name}: a name or synonym; {attr}: an attribute; {gloss}: a WordNet gloss
TEMPLATES = (
    "a photo of a {name}.",
    "a grayscale photo of a {name}.",
    "a small picture of the {name}.",
    "a {name}, {attr}.",
    "a photo of a {name} {attr}.",
    "a product image: {name}, {attr}.",
    "{name}: {gloss}.",
    "a photo of a {name}, {gloss}.",
)


def _article(text: str) -> str:
    return "an" if text[:1].lower() in "aeiou" else "a"


def fill(template: str, *, name: str, attr: str = "", gloss: str = "") -> str:
    """One template filled; "a {name}" becomes "an ..." before a vowel."""
    text = template.format(name=name, attr=attr, gloss=gloss)
    return re.sub(r"\ba (?=[aeiouAEIOU])", "an ", text)


def class_captions(spec: ClassText, templates: Sequence[str] = TEMPLATES) -> list[str]:
    """Every caption of a class: each template with each name and each attribute / gloss it uses (sorted,
    distinct)."""
    glosses = spec.glosses()
    out = set()
    for t in templates:
        for name in spec.names:
            attrs = spec.attributes if "{attr}" in t else ("",)
            gls = glosses if "{gloss}" in t else ("",)
            for a in attrs:
                for g in gls:
                    out.add(fill(t, name=name, attr=a, gloss=g))
    return sorted(out)


def mentions(text: str, words: Iterable[str]) -> list[str]:
    """The `words` (single words or phrases; plural "s"/"es" and "-" / " " variants included) that occur in
    `text` as whole words, case-insensitive."""
    found = []
    for w in words:
        body = re.escape(w.lower()).replace(r"\-", "[- ]?").replace(r"\ ", "[- ]?")
        if re.search(rf"(?<![a-z]){body}(e?s)?(?![a-z])", text.lower()):
            found.append(w)
    return found


def safe_captions(spec: ClassText, forbidden: Iterable[str], templates: Sequence[str] = TEMPLATES) -> list[str]:
    """`class_captions` minus any caption mentioning a `forbidden` word (e.g. WordNet's T-shirt gloss "a
    close-fitting pullover shirt" when pullover is a held-out class); ValueError if nothing is left, or if one
    of the class's own names is forbidden."""
    forbidden = tuple(forbidden)
    clash = [n for n in spec.names if mentions(n, forbidden)]
    if clash:
        raise ValueError(f"class {spec.names[0]!r}: its names {clash} are forbidden words")
    captions = [c for c in class_captions(spec, templates) if not mentions(c, forbidden)]
    if not captions:
        raise ValueError(f"class {spec.names[0]!r}: every caption mentions a forbidden word of {forbidden}")
    return captions


def encode(texts: Sequence[str], length: int) -> np.ndarray:
    """UTF-8 bytes of each text, 0-padded -> uint8 [len(texts), length]; ValueError naming a text that is longer
    or holds a NUL byte."""
    out = np.zeros((len(texts), length), np.uint8)
    for i, t in enumerate(texts):
        b = t.encode("utf-8")
        if len(b) > length or 0 in b:
            raise ValueError(f"caption {t!r}: {len(b)} bytes (> {length}) or a NUL byte")
        out[i, : len(b)] = np.frombuffer(b, np.uint8)
    return out


def decode(tokens: np.ndarray) -> str:
    """uint8/int [length] 0-padded bytes -> text."""
    return bytes(int(t) for t in np.asarray(tokens) if t).decode("utf-8", errors="replace")
