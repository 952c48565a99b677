"""Skip-gram negative-sampling word2vec (jaxdl/text/word2vec.py) on synthetic corpora with planted structure."""

import numpy as np
import pytest

from jaxdl.text import word2vec as w2v


def grouped_corpus(seed=0, n=3000):
    """Sentences of 6 random fillers + one whole group of 4 words that always occur together."""
    rng = np.random.default_rng(seed)
    fillers = [f"f{i}" for i in range(40)]
    groups = [[f"g{g}w{i}" for i in range(4)] for g in range(5)]
    sentences = []
    for _ in range(n):
        sentence = [str(w) for w in rng.choice(fillers, 6)] + groups[rng.integers(len(groups))]
        rng.shuffle(sentence)
        sentences.append(sentence)
    return sentences, groups


def analogy_corpus(seed=0, n=4000):
    """Each sentence: one word of a status x gender table with 2 words of its status' context, 2 of its gender's
    context and 2 fillers, so the vectors are (roughly) status + gender and king - man + woman lands on queen."""
    rng = np.random.default_rng(seed)
    table = {"royal": ("king", "queen"), "common": ("man", "woman"), "young": ("boy", "girl"), "holy": ("monk", "nun")}
    status_context = {s: [f"{s}{i}" for i in range(3)] for s in table}
    gender_context = [["he", "his", "him"], ["she", "her", "hers"]]
    fillers = [f"f{i}" for i in range(20)]
    sentences = []
    for _ in range(n):
        status, gender = list(table)[rng.integers(len(table))], rng.integers(2)
        words = [table[status][gender], *rng.choice(status_context[status], 2), *rng.choice(gender_context[gender], 2)]
        sentence = [str(w) for w in words + list(rng.choice(fillers, 2))]
        rng.shuffle(sentence)
        sentences.append(sentence)
    return sentences


SMALL = dict(dim=32, negatives=5, min_count=1, subsample=0.0, batch_size=256, lr=1e-2)


def test_cooccurring_words_are_nearest_neighbours_and_loss_decreases():
    sentences, groups = grouped_corpus()
    model = w2v.Word2Vec.train(sentences, w2v.Config(window=5, steps=600, **SMALL))
    for group in groups:
        for word in group:
            neighbours = [w for w, _ in model.nearest(word, 3)]
            assert set(neighbours) == set(group) - {word}, (word, neighbours)
    losses = model.losses
    assert len(losses) == 600
    assert np.log(2) * 1 < losses[0] <= np.log(2) * (1 + 5) + 1e-5  # output vectors start at 0
    assert losses[-50:].mean() < 0.7 * losses[:10].mean()


def test_analogy_recovers_planted_offsets():
    model = w2v.Word2Vec.train(analogy_corpus(), w2v.Config(window=8, steps=800, **SMALL))
    for (a, b, c), answer in [
        (("king", "man", "woman"), "queen"),
        (("queen", "woman", "man"), "king"),
        (("boy", "man", "woman"), "girl"),
        (("nun", "woman", "man"), "monk"),
        (("king", "queen", "girl"), "boy"),
    ]:
        best = model.analogy(a, b, c, k=3)
        assert best[0][0] == answer, ((a, b, c), best)
        assert {a, b, c}.isdisjoint(w for w, _ in best)


def test_same_seed_same_vectors():
    sentences, _ = grouped_corpus(n=300)
    config = w2v.Config(window=3, steps=20, **SMALL)
    first, second = w2v.Word2Vec.train(sentences, config), w2v.Word2Vec.train(sentences, config)
    np.testing.assert_array_equal(first.vectors, second.vectors)
    np.testing.assert_array_equal(first.losses, second.losses)
    other = w2v.Word2Vec.train(sentences, w2v.Config(window=3, steps=20, seed=1, **SMALL))
    assert not np.array_equal(first.vectors, other.vectors)


def test_tokens_vocab_and_subsampling():
    assert w2v.tokenize("Don't panic -- it's 42, O'Brien_x!") == ["don't", "panic", "it's", "42", "o'brien", "x"]
    vocab = w2v.Vocab.build([["b", "a", "b", "c"], ["a", "b", "d"]], min_count=2)
    assert vocab.words == ("b", "a") and list(vocab.counts) == [3, 2]
    assert list(vocab.encode(["a", "zzz", "b"])) == [1, 0]
    keep = w2v.keep_probs(np.array([1000, 10, 1]), 1e-2)
    f = np.array([1000, 10, 1]) / 1011
    np.testing.assert_allclose(keep, np.minimum(1, np.sqrt(1e-2 / f) + 1e-2 / f))
    assert keep[0] < 0.2 and keep[2] == 1.0
    np.testing.assert_array_equal(w2v.keep_probs(np.array([5, 1]), 0.0), [1.0, 1.0])


def test_pairs_stay_in_windows_and_sentences():
    sentences = [np.arange(0, 6, dtype=np.int32), np.arange(10, 14, dtype=np.int32)]
    rng = np.random.default_rng(0)
    centers, contexts = w2v.skipgram_pairs(sentences, 1, np.ones(20), rng)  # window 1: exactly the neighbours
    expected = {(a, a + 1) for a in [0, 1, 2, 3, 4, 10, 11, 12]} | {(a + 1, a) for a in [0, 1, 2, 3, 4, 10, 11, 12]}
    assert set(zip(centers.tolist(), contexts.tolist(), strict=True)) == expected and len(centers) == len(expected)
    centers, contexts = w2v.skipgram_pairs(sentences, 3, np.ones(20), rng)
    assert (np.abs(centers - contexts) <= 3).all() and (centers != contexts).all()
    assert ((centers < 10) == (contexts < 10)).all()  # no window crosses a sentence
    centers, _ = w2v.skipgram_pairs(sentences, 3, np.r_[np.zeros(10), np.ones(10)], rng)  # keep prob 0: gone
    assert (centers >= 10).all()


def test_bad_arguments_raise_naming_them():
    with pytest.raises(ValueError, match="dim"):
        w2v.Config(dim=0)
    with pytest.raises(ValueError, match="min_count"):
        w2v.Vocab.build([["a", "b"]], min_count=3)
    model = w2v.Word2Vec.train(grouped_corpus(n=300)[0], w2v.Config(window=2, steps=2, **SMALL))
    with pytest.raises(KeyError, match="'unicorn'"):
        model.nearest("unicorn")
    with pytest.raises(ValueError, match="batch_size"):
        w2v.Word2Vec.train([["a", "b"], ["b", "a"]], w2v.Config(window=2, steps=2, **SMALL))
