"""The n-gram baseline: normalisation of every smoothing, hand-computed Kneser-Ney / add-k / Katz values, the
vectorised scorer against per-position queries, and held-out perplexity falling with the order on pydoc text."""

import math
from collections import Counter

import numpy as np
import pytest

from jaxdl.data import text_corpora
from jaxdl.text.ngram import SMOOTHINGS, NGramLM
from jaxdl.text.tokenizer import CharTokenizer

TINY = [0, 1, 0, 1, 2, 0]  # "a b a b c a" over V = 3 (a=0, b=1, c=2)


@pytest.fixture(scope="module")
def pydoc():
    train, test = text_corpora.split_text("pydoc", "train"), text_corpora.split_text("pydoc", "test")
    tok = CharTokenizer.train(train)
    return tok, np.array(tok.encode(train)), np.array(tok.encode(test))


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_probabilities_sum_to_one(pydoc, smoothing):
    tok, train, test = pydoc
    train = train[:60_000]
    unseen = tok.encode("\x7f\x7f\x7fzq")  # <unk> ids and a rare pair: contexts the model never saw
    for order in (1, 2, 4):
        lm = NGramLM(order, tok.vocab_size, smoothing, k=0.1).fit(train)
        contexts = [[], train[:1], train[100:104], train[5000:5010], test[:3], test[700:704], unseen]
        for ctx in contexts:
            p = lm.probs(ctx)
            assert p.shape == (tok.vocab_size,) and np.all(p > 0), (order, ctx)
            assert abs(p.sum() - 1) < 1e-9, (smoothing, order, list(ctx), p.sum())


def test_kneser_ney_matches_hand_computation():
    # bigram counts ab:2 ba:1 bc:1 ca:1; unigram continuation counts N1+(.a)=2, N1+(.b)=1, N1+(.c)=1 of 4
    lm = NGramLM(2, 3, "kn", discount=0.5).fit(TINY)
    # p1(a) = (2 - .5 + .5*3/3) / 4 = .5 ; p1(b) = p1(c) = (1 - .5 + .5) / 4 = .25
    np.testing.assert_allclose(lm.probs([]), [0.5, 0.25, 0.25], atol=1e-12)
    # context a: c(a.) = 2, one type: p(b|a) = (1.5 + .5*1*.25)/2, p(a|a) = .5*.5/2, p(c|a) = .5*.25/2
    np.testing.assert_allclose(lm.probs([0]), [0.125, 0.8125, 0.0625], atol=1e-12)
    # context b: c(b.) = 2, two types: p(a|b) = (.5 + .5*2*.5)/2, p(b|b) = .5*2*.25/2, p(c|b) = (.5 + .25)/2
    np.testing.assert_allclose(lm.probs([1]), [0.5, 0.125, 0.375], atol=1e-12)
    np.testing.assert_allclose(lm.probs([2]), [0.75, 0.125, 0.125], atol=1e-12)
    # trigram model: trigrams aba bab abc bca once each; bigram continuation counts ab=ba=bc=ca=1
    lm3 = NGramLM(3, 3, "kn", discount=0.5).fit(TINY)
    p2_c_given_b = (0.5 + 0.5 * 2 * 0.25) / 2  # .375 (context b: continuations a, c)
    p2_a_given_b = (0.5 + 0.5 * 2 * 0.5) / 2  # .5
    # context ab: continuations a and c once each: p3(c|ab) = (.5 + .5*2*p2(c|b)) / 2
    assert lm3.prob([0, 1], 2) == pytest.approx((0.5 + 0.5 * 2 * p2_c_given_b) / 2, abs=1e-12)  # .4375
    assert lm3.prob([0, 1], 0) == pytest.approx((0.5 + 0.5 * 2 * p2_a_given_b) / 2, abs=1e-12)  # .5
    assert lm3.prob([0, 1], 1) == pytest.approx(0.5 * 2 * 0.125 / 2, abs=1e-12)  # p2(b|b) = .5*2*.25/2
    assert lm3.prob([2, 2], 0) == pytest.approx(0.5 + 0.5 * 0.5, abs=1e-12)  # unseen "cc": backs off to p2(a|c)
    # the sequence start uses the lower orders: p1(a) p2(b|a) p3(c|ab) with p2(b|a) = .5 + .5*.25
    assert lm3.log_prob_sequence([0, 1, 2]) == pytest.approx(math.log(0.5 * 0.625 * 0.4375), abs=1e-12)
    # default discount n1 / (n1 + 2 n2) from the raw bigram counts (n1 = 3, n2 = 1)
    assert NGramLM(2, 3, "kn").fit(TINY).discounts[2] == pytest.approx(0.6)


def test_add_k_matches_hand_computation():
    lm = NGramLM(2, 3, "addk", k=1.0).fit(TINY)
    np.testing.assert_allclose(lm.probs([0]), [1 / 5, 3 / 5, 1 / 5])  # (c + 1) / (2 + 3)
    np.testing.assert_allclose(lm.probs([1]), [2 / 5, 1 / 5, 2 / 5])
    np.testing.assert_allclose(NGramLM(1, 3, "addk", k=0.5).fit(TINY).probs([]), [3.5 / 7.5, 2.5 / 7.5, 1.5 / 7.5])


def _katz_reference(counts: Counter) -> tuple[dict[int, float], bool]:
    """Katz's Good-Turing ratios d_r (r <= 5) from counts-of-counts, or (r - D)/r when GT is not in (0, 1]."""
    n = Counter(counts.values())
    common = 6 * n[6] / n[1]
    d = {r: ((r + 1) * n[r + 1] / (r * n[r]) - common) / (1 - common) for r in range(1, 6)}
    if all(0 < v <= 1 for v in d.values()):
        return d, True
    D = n[1] / (n[1] + 2 * n[2])
    return {r: (r - D) / r for r in range(1, 6)}, False


@pytest.mark.parametrize("order, good_turing", [(3, False), (4, True)])  # GT invalid / valid on this text
def test_katz_seen_probabilities_are_discounted_counts(pydoc, order, good_turing):
    tok, train, _ = pydoc
    train = train[:200_000]
    lm = NGramLM(order, tok.vocab_size, "katz").fit(train)
    ngrams = Counter(zip(*(train[j : len(train) - order + 1 + j].tolist() for j in range(order)), strict=True))
    by_context: dict[tuple, list[int]] = {}
    for g, c in ngrams.items():
        by_context.setdefault(g[:-1], []).append(c)
    d, used_gt = _katz_reference(ngrams)
    assert used_gt == good_turing
    checked = 0
    for g, c in list(ngrams.items())[:3000]:
        cs = by_context[g[:-1]]
        if sum(v * d.get(v, 1.0) for v in cs) < sum(cs) - 1e-9:  # skip contexts with only counts > 5 (see ngram.py)
            assert lm.prob(list(g[:-1]), g[-1]) == pytest.approx(d.get(c, 1.0) * c / sum(cs), rel=1e-9)
            checked += 1
    assert checked > 1000
    # an unseen id after a seen context gets alpha(h) * p(w | shorter context): one ratio for all unseen ids
    h = max(by_context, key=lambda k: len(by_context[k]))
    unseen = [w for w in range(tok.vocab_size) if tuple(h) + (w,) not in ngrams]
    ratios = [lm.prob(list(h), w) / lm.prob(list(h[1:]), w) for w in unseen]
    assert len(unseen) > 5 and ratios[0] > 0
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_vectorised_scores_match_single_queries(pydoc, smoothing):
    tok, train, test = pydoc
    lm = NGramLM(4, tok.vocab_size, smoothing, k=0.1).fit(train[:50_000])
    seq = test[:40]
    ref = [math.log(lm.prob(seq[max(0, i - 3) : i], int(seq[i]))) for i in range(len(seq))]
    np.testing.assert_allclose(lm.token_log_probs(seq), ref, rtol=1e-12)
    assert lm.bits_per_character(seq) == pytest.approx(-sum(ref) / math.log(2) / len(seq))
    assert lm.perplexity(seq) == pytest.approx(math.exp(-sum(ref) / len(seq)))


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_held_out_perplexity_falls_with_order(pydoc, smoothing):
    tok, train, test = pydoc
    ppl = {n: NGramLM(n, tok.vocab_size, smoothing, k=0.01).fit(train).perplexity(test) for n in (1, 3)}
    assert ppl[3] < 0.6 * ppl[1], ppl
    assert 10 < ppl[1] < tok.vocab_size  # a unigram model: better than uniform, worse than any context model


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="smoothing"):
        NGramLM(2, 3, "witten-bell")
    with pytest.raises(ValueError, match="vocab_size"):
        NGramLM(6, 2**11)
    with pytest.raises(ValueError, match="order"):
        NGramLM(0, 3)
    with pytest.raises(RuntimeError, match="fit"):
        NGramLM(2, 3).prob([0], 1)
    lm = NGramLM(2, 3).fit(TINY)
    with pytest.raises(ValueError, match="vocab_size"):
        lm.prob([0], 3)
    with pytest.raises(ValueError, match="tokens"):
        lm.log_prob_sequence([0, 5])
