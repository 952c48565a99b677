"""BERT WordPiece tokenization with the `tokenizers` library: HF vocab (tokenizer.json or vocab.txt) -> padded
int32 batches.

`WordPiece(path)` takes a HF model directory (tokenizer.json preferred, else vocab.txt), a tokenizer.json or a
vocab.txt. Lowercasing follows the model's tokenizer_config.json `do_lower_case` (or tokenizer.json's normalizer)
unless `lowercase=` is given. `encode(texts)` adds [CLS] ... [SEP], truncates to `max_length`, pads with [PAD] to
the longest text (or to `length`) and returns int32 `input_ids`, `attention_mask`, `token_type_ids` [batch, L].
"""

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, normalizers
from tokenizers.implementations import BertWordPieceTokenizer

SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _lowercase_from_config(directory: Path) -> bool | None:
    cfg = directory / "tokenizer_config.json"
    if cfg.is_file():
        value = json.loads(cfg.read_text()).get("do_lower_case")
        return None if value is None else bool(value)
    return None


class WordPiece:
    """A BERT WordPiece tokenizer; see the module docstring."""

    def __init__(self, path: str | Path, *, lowercase: bool | None = None, max_length: int = 512):
        path = Path(path)
        if path.is_dir():
            lowercase = _lowercase_from_config(path) if lowercase is None else lowercase
            candidates = [path / "tokenizer.json", path / "vocab.txt"]
            found = [p for p in candidates if p.is_file()]
            if not found:
                raise FileNotFoundError(f"wordpiece: {path} has neither tokenizer.json nor vocab.txt")
            path = found[0]
        if not path.is_file():
            raise FileNotFoundError(f"wordpiece: {path} not found (give a tokenizer.json, a vocab.txt or a directory)")
        if path.suffix == ".json":
            self.tokenizer = Tokenizer.from_file(str(path))
            if self.tokenizer.model.__class__.__name__ != "WordPiece":
                raise ValueError(
                    f"wordpiece: {path} holds a {type(self.tokenizer.model).__name__} model, not WordPiece"
                )
            if lowercase is not None:  # BERT's normalizer with the requested casing (accents follow lowercasing)
                self.tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=None)
        else:
            words = set(path.read_text(encoding="utf-8").splitlines())
            absent = [t for t in SPECIAL if t not in words]
            if absent:
                raise ValueError(f"wordpiece: vocabulary {path} lacks the special token(s) {absent}")
            self.tokenizer = BertWordPieceTokenizer(str(path), lowercase=True if lowercase is None else lowercase)
        if max_length < 2:
            raise ValueError(f"wordpiece: max_length={max_length} must leave room for [CLS] and [SEP]")
        self.max_length = max_length
        ids = {t: self.tokenizer.token_to_id(t) for t in SPECIAL}
        absent = [t for t, i in ids.items() if i is None]
        if absent:
            raise ValueError(f"wordpiece: vocabulary {path} lacks the special token(s) {absent}")
        self.pad_id, self.unk_id, self.cls_id = ids["[PAD]"], ids["[UNK]"], ids["[CLS]"]
        self.sep_id, self.mask_id = ids["[SEP]"], ids["[MASK]"]
        self.vocab_size = self.tokenizer.get_vocab_size()

    def encode(self, texts: Sequence[str] | str, *, length: int | None = None) -> dict[str, np.ndarray]:
        """Texts -> {"input_ids", "attention_mask", "token_type_ids"}: int32 [batch, L], L = `length` (texts are
        truncated to it) or the longest text's token count (truncated at max_length)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        limit = self.max_length if length is None else length
        if limit < 2:
            raise ValueError(f"wordpiece: length={length} must leave room for [CLS] and [SEP]")
        tok = self.tokenizer
        tok.enable_truncation(max_length=limit)
        tok.enable_padding(pad_id=self.pad_id, pad_token="[PAD]", length=length)
        encs = tok.encode_batch(texts)
        return {
            "input_ids": np.array([e.ids for e in encs], np.int32).reshape(len(texts), -1),
            "attention_mask": np.array([e.attention_mask for e in encs], np.int32).reshape(len(texts), -1),
            "token_type_ids": np.array([e.type_ids for e in encs], np.int32).reshape(len(texts), -1),
        }

    def tokens(self, text: str) -> list[str]:
        """The WordPiece tokens of one text (with [CLS]/[SEP]), for inspection."""
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length)
        return self.tokenizer.encode(text).tokens

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Token ids -> text (special tokens dropped, '##' pieces joined)."""
        return self.tokenizer.decode([int(i) for i in np.asarray(ids).reshape(-1)])
