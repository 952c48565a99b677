"""Text data and tokenizers: pydoc / fortunes splits and byte-window builders, tokenizer round trips and
save/load, and the number-words translation task (format, held-out numbers)."""

import numpy as np
import pytest
from offline_data import require_fortunes

from jaxdl import data
from jaxdl.data import text_corpora, translation
from jaxdl.text import tokenizer

NON_ASCII = "naïve café — “quoted” 日本語 ß°… \t tab\x08 end\n"


@pytest.mark.parametrize("corpus", text_corpora.CORPORA)
def test_splits_are_fixed_disjoint_and_90_5_5(corpus):
    if corpus == "fortunes":
        require_fortunes()
    docs = text_corpora.documents(corpus)
    parts = text_corpora.split_documents(corpus)
    sizes = {s: len(d) for s, d in parts.items()}
    assert sum(sizes.values()) == len(docs) > 2000
    assert abs(sizes["valid"] / len(docs) - 0.05) < 0.001 and abs(sizes["test"] / len(docs) - 0.05) < 0.001
    # together the splits are the documents, each used once (as a multiset)
    assert sorted(d for p in parts.values() for d in p) == sorted(docs)
    assert text_corpora.split_documents(corpus) == parts  # deterministic
    texts = {s: text_corpora.split_text(corpus, s) for s in text_corpora.SPLITS}
    sep = text_corpora.SEPARATORS[corpus]
    assert texts["test"] == "".join(d + sep for d in parts["test"])
    if corpus == "pydoc":
        from pydoc_data import topics

        total = sum(len(v) for v in topics.topics.values())
        assert 0.97 * total < sum(len(t) for t in texts.values()) < 1.03 * total
        assert "yield" in texts["train"]
    else:
        assert 2_300_000 < sum(len(t) for t in texts.values()) < 2_900_000


def test_byte_windows_overlap_by_one_and_cover_the_text():
    text = "héllo, wörld! " * 20
    w = text_corpora.byte_windows(text, 16)
    raw = np.frombuffer(text.encode(), np.uint8)
    assert w.shape == ((len(raw) - 1) // 16, 17) and w.dtype == np.uint8
    np.testing.assert_array_equal(w[:-1, -1], w[1:, 0])
    np.testing.assert_array_equal(np.concatenate([w[:, :-1].ravel(), w[-1:, -1]]), raw[: w.shape[0] * 16 + 1])
    with pytest.raises(ValueError, match="seq_len"):
        text_corpora.byte_windows(text, 0)


def test_pydoc_builder_examples_are_windows_of_the_split_text(data_dir):
    info = data.info("pydoc_bytes128", data_dir)
    assert info["num_classes"] == 256 and info["input_shape"] == (128,)
    src = data.load("pydoc_bytes128", "test", data_dir)
    windows = text_corpora.byte_windows(text_corpora.split_text("pydoc", "test"), 128)
    assert len(src) == info["splits"]["test"] == len(windows)
    batch = data.preprocess("pydoc_bytes128", data.memory.read(src, np.arange(len(src))))
    assert batch["input"].dtype == np.int32 and batch["label"].dtype == np.int32
    np.testing.assert_array_equal(batch["input"][:, 1:], batch["label"][:, :-1])  # label = next byte
    ours = {
        bytes(np.concatenate([x, y[-1:]]).astype(np.uint8)) for x, y in zip(batch["input"], batch["label"], strict=True)
    }
    assert ours == {bytes(w) for w in windows}


def test_missing_fortunes_say_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXDL_FORTUNES_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="apt-get install fortunes"):
        text_corpora.split_text("fortunes", "train")
    with pytest.raises(ValueError, match="corpus"):
        text_corpora.documents("shakespeare")
    with pytest.raises(ValueError, match="split"):
        text_corpora.split_text("pydoc", "dev")


@pytest.fixture(scope="module")
def texts():
    out = {
        "pydoc_train": text_corpora.split_text("pydoc", "train"),
        "pydoc_test": text_corpora.split_text("pydoc", "test"),
    }
    try:
        out["fortunes_test"] = text_corpora.split_text("fortunes", "test")
    except FileNotFoundError:
        pass
    return out


def test_byte_and_char_tokenizers_round_trip(texts, tmp_path):
    byte = tokenizer.ByteTokenizer(["<pad>", "<eos>"])
    assert byte.vocab_size == 258 and byte.token_id("<eos>") == 257
    chars = tokenizer.CharTokenizer.train(texts["pydoc_train"])
    for name, text in [*texts.items(), ("non-ascii", NON_ASCII)]:
        assert byte.decode(byte.encode(text)) == text, name
        assert len(byte.encode(text)) == len(text.encode("utf-8"))
    assert chars.decode(chars.encode(texts["pydoc_train"])) == texts["pydoc_train"]  # its own characters
    assert byte.decode(byte.encode("ab") + [256, 257]) == "ab"  # specials are dropped
    assert chars.decode(chars.encode("a日b")) == "a\ufffdb"  # unseen characters become <unk>
    for tok in (byte, chars):
        tok.save(str(tmp_path / tok.kind))
        loaded = tokenizer.load(str(tmp_path / tok.kind))
        assert type(loaded) is type(tok) and loaded.encode(NON_ASCII) == tok.encode(NON_ASCII)
        with pytest.raises(ValueError, match="vocabulary"):
            tok.decode([tok.vocab_size])


def test_bpe_trains_round_trips_and_reloads(texts, tmp_path):
    bpe = tokenizer.BPETokenizer.train([texts["pydoc_train"]], vocab_size=600, specials=["<eos>"])
    assert bpe.vocab_size == 600 and bpe.token_id("<eos>") == 0
    for name, text in [*texts.items(), ("non-ascii", NON_ASCII)]:
        ids = bpe.encode(text)
        assert bpe.decode(ids) == text, name
        assert max(ids) < 600
    # merges learnt on the train split compress the held-out split
    assert len(bpe.encode(texts["pydoc_test"])) < 0.5 * len(texts["pydoc_test"].encode())
    bpe.save(str(tmp_path))
    loaded = tokenizer.load(str(tmp_path))
    assert isinstance(loaded, tokenizer.BPETokenizer) and loaded.vocab_size == 600
    assert loaded.encode(texts["pydoc_test"][:5000]) == bpe.encode(texts["pydoc_test"][:5000])
    with pytest.raises(ValueError, match="vocab_size"):
        tokenizer.BPETokenizer.train(["abc"], vocab_size=100)
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        tokenizer.load(str(tmp_path / "nothing"))


def test_number_words():
    cases = {
        0: "zero",
        13: "thirteen",
        40: "forty",
        342: "three hundred and forty-two",
        1000: "one thousand",
        12004: "twelve thousand and four",
        100_000: "one hundred thousand",
        373_373: "three hundred and seventy-three thousand three hundred and seventy-three",
        999_999: "nine hundred and ninety-nine thousand nine hundred and ninety-nine",
    }
    for n, words in cases.items():
        assert translation.number_to_words(n) == words
    with pytest.raises(ValueError, match="n must be"):
        translation.number_to_words(1_000_000)


def test_translation_splits_hold_out_numbers():
    splits = translation.split_numbers()
    assert {s: len(v) for s, v in splits.items()} == translation.SIZES
    train = set(splits["train"].tolist())
    assert not train & set(splits["test"].tolist()) and not train & set(splits["valid"].tolist())
    np.testing.assert_array_equal(translation.split_numbers()["test"], splits["test"])


def test_translation_examples_format(data_dir):
    info = data.info("numbers_words2digits", data_dir)
    assert info["num_classes"] == translation.VOCAB_SIZE == 259 and info["input_shape"] == (80,)
    src = data.load("numbers_words2digits", "test", data_dir)
    batch = data.preprocess("numbers_words2digits", data.memory.read(src, np.arange(200)))
    x, t_in, y = batch["input"], batch["target_in"], batch["label"]
    assert x.shape == (200, 80) and t_in.shape == y.shape == (200, 8)
    assert all(a.dtype == np.int32 for a in (x, t_in, y))
    assert np.all(t_in[:, 0] == translation.BOS)
    valid = y >= 0
    np.testing.assert_array_equal(t_in[:, 1:][valid[:, :-1]], y[:, :-1][valid[:, :-1]])  # teacher forcing shift
    tok = translation.TOKENIZER
    test_numbers = set(translation.split_numbers()["test"].tolist())
    for row_x, row_y in zip(x, y, strict=True):
        assert row_y[row_y >= 0][-1] == translation.EOS
        digits = tok.decode(row_y[row_y >= 0])
        words = tok.decode(row_x[row_x != translation.PAD])
        assert int(digits) in test_numbers and translation.number_to_words(int(digits)) == words
    # the other direction swaps source and target
    src_ids, tgt_ids = translation.encode_pair(342, "digits2words")
    assert tok.decode(src_ids) == "342" and tok.decode(tgt_ids) == "three hundred and forty-two"
    assert tgt_ids.shape == (80,) and list(tgt_ids).count(translation.EOS) == 1
    with pytest.raises(ValueError, match="direction"):
        translation.encode_pair(1, "words2roman")
