"""Tokenizers with one small interface: `encode(str) -> list[int]`, `decode(list[int]) -> str`, `vocab_size`,
`save(dir)`; `load(dir)` reads back whichever was saved (the tokenizer travels with a checkpoint).

- `ByteTokenizer`: the UTF-8 bytes (ids 0..255) then optional special tokens (ids 256, 257, ...).
- `CharTokenizer`: the characters of a training text (sorted), id 0 = `<unk>` for any other character; what the
  character-level n-gram baseline counts.
- `BPETokenizer`: byte-level BPE trained with HuggingFace `tokenizers` (GPT-2 style byte alphabet, so any text
  round-trips exactly); saved as the library's own `tokenizer.json`.

All three write `<dir>/tokenizer.json`; `load` dispatches on its content.
"""

import json
import os
from collections.abc import Iterable, Sequence

FILENAME = "tokenizer.json"


def _write(directory: str, content: dict) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, FILENAME)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f, ensure_ascii=False)
    return path


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255, then `specials` as ids 256, 257, ... (never produced by `encode`)."""

    kind = "bytes"

    def __init__(self, specials: Sequence[str] = ()):
        if len(set(specials)) != len(specials):
            raise ValueError(f"specials must be distinct, got {list(specials)}")
        self.specials = tuple(specials)

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.specials)

    def token_id(self, special: str) -> int:
        """The id of a special token."""
        if special not in self.specials:
            raise ValueError(f"special token {special!r} is unknown; specials: {list(self.specials)}")
        return 256 + self.specials.index(special)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        """The text of the byte ids; special ids are dropped; invalid UTF-8 becomes U+FFFD."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"ids {bad[:5]} are outside the vocabulary [0, {self.vocab_size})")
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def save(self, directory: str) -> str:
        return _write(directory, {"jaxdl_tokenizer": self.kind, "specials": list(self.specials)})


class CharTokenizer:
    """The characters of a text as ids 1..n (sorted by code point); id 0 is `<unk>` (decoded as U+FFFD)."""

    kind = "chars"
    UNK = 0

    def __init__(self, chars: Iterable[str]):
        chars = sorted(set(chars))
        if any(len(c) != 1 for c in chars):
            raise ValueError("chars must be single characters")
        self.chars = chars
        self._ids = {c: i + 1 for i, c in enumerate(chars)}

    @classmethod
    def train(cls, text: str) -> "CharTokenizer":
        return cls(set(text))

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> list[int]:
        return [self._ids.get(c, self.UNK) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"id {i} is outside the vocabulary [0, {self.vocab_size})")
            out.append("\ufffd" if i == self.UNK else self.chars[i - 1])
        return "".join(out)

    def save(self, directory: str) -> str:
        return _write(directory, {"jaxdl_tokenizer": self.kind, "chars": "".join(self.chars)})


class BPETokenizer:
    """Byte-level BPE (HuggingFace `tokenizers`): `BPETokenizer.train(texts, vocab_size)`, or wrap a loaded one."""

    kind = "bpe"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int, specials: Sequence[str] = (), min_frequency: int = 2
    ) -> "BPETokenizer":
        """Learns merges on `texts` until `vocab_size` ids (256 byte symbols + specials + merges)."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        alphabet = pre_tokenizers.ByteLevel.alphabet()
        if vocab_size < len(alphabet) + len(specials):
            raise ValueError(
                f"vocab_size={vocab_size} is below the {len(alphabet)} byte symbols + {len(specials)} specials"
            )
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(specials),
            initial_alphabet=alphabet,
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def token_id(self, special: str) -> int:
        i = self.tokenizer.token_to_id(special)
        if i is None:
            raise ValueError(f"token {special!r} is not in the vocabulary")
        return i

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"ids {bad[:5]} are outside the vocabulary [0, {self.vocab_size})")
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def save(self, directory: str) -> str:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, FILENAME)
        self.tokenizer.save(path)
        return path


def load(directory: str) -> ByteTokenizer | CharTokenizer | BPETokenizer:
    """The tokenizer saved in `directory` by any of the classes' `save`."""
    path = os.path.join(directory, FILENAME)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no {FILENAME} in {directory} (save a tokenizer there with tokenizer.save(dir))")
    with open(path, encoding="utf-8") as f:
        content = json.load(f)
    kind = content.get("jaxdl_tokenizer")
    if kind == ByteTokenizer.kind:
        return ByteTokenizer(content["specials"])
    if kind == CharTokenizer.kind:
        return CharTokenizer(content["chars"])
    if kind is None and content.get("model", {}).get("type") == "BPE":
        from tokenizers import Tokenizer

        return BPETokenizer(Tokenizer.from_file(path))
    raise ValueError(f"{path} is not a tokenizer this module saved (jaxdl_tokenizer={kind!r})")
