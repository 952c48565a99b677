"""A synthetic translation task: English number words <-> digits, as a TFDS array_record builder.

"three hundred and forty-two thousand and seven" <-> "342007", for integers in [0, 1_000_000) (British "and"
after hundreds and before a last part below 100; hyphenated tens). Configs: `words2digits` and `digits2words`.

Data: one permutation of [0, 1e6) from `np.random.default_rng(seed)` (seed 0) gives `test` (its first 2000
numbers), `valid` (the next 2000) and `train` (the next 50000): no test or valid number appears in train.

Tokens are UTF-8 bytes (ids 0..255) plus three specials: PAD = 256, BOS = 257, EOS = 258 (vocabulary 259,
`jaxdl.text.tokenizer.ByteTokenizer(SPECIALS)`). Stored per example: `source` int32 [S] (the source bytes, then
PAD) and `label` [T] in [0, 259) (the target bytes, EOS, then PAD); S, T = 80, 8 for words2digits and 8, 80 for
digits2words (the longest number in words has 72 characters).

`preprocess` gives what an encoder-decoder consumes (teacher forcing):
- "input": int32 [batch, S], the source tokens padded with PAD (the encoder input; mask = input != PAD);
- "target_in": int32 [batch, T], BOS then the target tokens shifted right by one (the decoder input);
- "label": int32 [batch, T], the target tokens then EOS, with -1 at padding (ignored by the loss).
"""

import numpy as np
import tensorflow_datasets as tfds

from jaxdl.text.tokenizer import ByteTokenizer

SEED = 0
MAX_NUMBER = 1_000_000
SIZES = {"test": 2000, "valid": 2000, "train": 50000}
SPECIALS = ("<pad>", "<bos>", "<eos>")
TOKENIZER = ByteTokenizer(SPECIALS)
PAD, BOS, EOS = (TOKENIZER.token_id(s) for s in SPECIALS)
VOCAB_SIZE = TOKENIZER.vocab_size
WORDS_LEN, DIGITS_LEN = 80, 8  # padded lengths of the words side and the digits side (with EOS on targets)

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _below_100(n: int) -> str:
    return _ONES[n] if n < 20 else _TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else "")


def _below_1000(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    if not hundreds:
        return _below_100(n)
    return f"{_ONES[hundreds]} hundred" + (f" and {_below_100(rest)}" if rest else "")


def number_to_words(n: int) -> str:
    """English words of an integer in [0, 1_000_000): 12004 -> "twelve thousand and four"."""
    if not 0 <= n < MAX_NUMBER:
        raise ValueError(f"n must be in [0, {MAX_NUMBER}), got {n}")
    thousands, rest = divmod(n, 1000)
    if not thousands:
        return _below_1000(n)
    tail = "" if not rest else (" and " if rest < 100 else " ") + _below_1000(rest)
    return f"{_below_1000(thousands)} thousand{tail}"


def split_numbers(seed: int = SEED) -> dict[str, np.ndarray]:
    """{split: int64 numbers}: disjoint slices of one seeded permutation of [0, 1e6)."""
    perm = np.random.default_rng(seed).permutation(MAX_NUMBER)
    out, start = {}, 0
    for split, size in SIZES.items():
        out[split] = perm[start : start + size]
        start += size
    return out


def _pad(ids: list[int], length: int, what: str) -> np.ndarray:
    if len(ids) > length:
        raise ValueError(f"{what} has {len(ids)} tokens, more than its padded length {length}")
    return np.array(ids + [PAD] * (length - len(ids)), np.int32)


def encode_pair(n: int, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """(source int32 [S] padded with PAD, target int32 [T]: target bytes, EOS, PAD...) for number n."""
    words, digits = TOKENIZER.encode(number_to_words(n)), TOKENIZER.encode(str(n))
    if direction == "words2digits":
        return _pad(words, WORDS_LEN, "source"), _pad(digits + [EOS], DIGITS_LEN, "target")
    if direction == "digits2words":
        return _pad(digits, DIGITS_LEN, "source"), _pad(words + [EOS], WORDS_LEN, "target")
    raise ValueError(f"direction {direction!r} is unknown; known: words2digits, digits2words")


class NumberTranslation(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="words2digits", description="English number words -> digits."),
        tfds.core.BuilderConfig(name="digits2words", description="digits -> English number words."),
    ]

    def _lengths(self) -> tuple[int, int]:
        return (WORDS_LEN, DIGITS_LEN) if self.builder_config.name == "words2digits" else (DIGITS_LEN, WORDS_LEN)

    def _info(self) -> tfds.core.DatasetInfo:
        src_len, tgt_len = self._lengths()
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "source": tfds.features.Tensor(shape=(src_len,), dtype=np.int32),
                    "label": tfds.features.Sequence(tfds.features.ClassLabel(num_classes=VOCAB_SIZE), length=tgt_len),
                }
            ),
            supervised_keys=("source", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # generated offline
        numbers = split_numbers()
        return {split: self._generate_examples(numbers[split]) for split in SIZES}

    def _generate_examples(self, numbers):
        for n in numbers:
            source, target = encode_pair(int(n), self.builder_config.name)
            yield int(n), {"source": source, "label": target.astype(np.int64)}


def preprocess(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stacked raw examples -> {"input": int32 [batch, S], "target_in": int32 [batch, T], "label": int32 [batch, T]}
    (see the module docstring)."""
    target = examples["label"].astype(np.int32)
    bos = np.full((target.shape[0], 1), BOS, np.int32)
    return {
        "input": examples["source"].astype(np.int32),
        "target_in": np.concatenate([bos, target[:, :-1]], axis=1),
        "label": np.where(target == PAD, -1, target),
    }
