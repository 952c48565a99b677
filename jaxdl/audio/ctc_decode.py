"""CTC decoding on the host: greedy (best path), prefix beam search, and prefix beam search with a character n-gram
LM by shallow fusion (`jaxdl.text.ngram.NGramLM`, the project's n-gram code).

Inputs are one utterance's per-frame log-probabilities float [frames, vocab] (log-softmax of a CTC model's
logits, padding frames already cut off), `blank` the blank id. Outputs are label-id tuples without blanks.

Prefix beam search (Hannun et al. 2014, "First-pass large vocabulary continuous speech recognition using
bi-directional recurrent DNNs") keeps, per prefix l, log p_b(l) / log p_nb(l): the mass of the frame alignments
collapsing to l whose last frame is blank / not blank. Without pruning (beam at least the number of prefixes) the
final log(p_b + p_nb) is exactly log p_ctc(l | x), the sum over every alignment (checked against brute force in
tests/test_ctc_decode.py). Shallow fusion ranks a prefix by

    log p_ctc(l | x) + lm_weight * log p_lm(l) + length_bonus * |l|

where p_lm is a character n-gram over the same label ids; an utterance starts and ends at a word boundary (the
`boundary` id, the space), so the LM is asked p(l_1 | boundary) first and, with `end_boundary`, p(boundary | l) at
the end. Written here (not pyctcdecode / torchaudio): those take word-level KenLM models or torch; ours fuses the
project's own character n-gram with no new dependency.

Beam 1 is not best-path decoding in general: the beam keeps the prefix of highest total mass, which can differ from
the per-frame argmax when the best frame is not a majority. When every frame's most likely token has probability
>= 0.9 (a trained model's frames almost always) the two coincide (tested).
"""

from collections.abc import Sequence

import numpy as np

NEG_INF = -np.inf


def greedy(log_probs: np.ndarray, blank: int = 0) -> tuple[int, ...]:
    """Best-path decoding of float [frames, vocab]: per-frame argmax, repeats merged, blanks dropped."""
    return collapse(np.asarray(log_probs).argmax(-1), blank)


def collapse(path: Sequence[int], blank: int = 0) -> tuple[int, ...]:
    """The CTC collapse of a frame path: merge runs of the same id, then drop blanks."""
    out, prev = [], None
    for p in np.asarray(path).tolist():
        if p != prev and p != blank:
            out.append(p)
        prev = p
    return tuple(out)


class _LMCache:
    """log p_lm(next | context) of an NGramLM, cached per context (its last order-1 ids)."""

    def __init__(self, lm, boundary: int):
        self.lm, self.boundary, self.n = lm, boundary, lm.order - 1
        self.cache: dict[tuple[int, ...], np.ndarray] = {}

    def log_probs(self, prefix: tuple[int, ...]) -> np.ndarray:
        ctx = ((self.boundary,) + prefix)[-self.n :] if self.n else ()
        if ctx not in self.cache:
            self.cache[ctx] = np.log(np.maximum(self.lm.probs(np.array(ctx, np.int64)), 1e-300))
        return self.cache[ctx]


def prefix_beam_search(
    log_probs: np.ndarray,
    beam_size: int = 8,
    blank: int = 0,
    lm=None,
    lm_weight: float = 0.0,
    length_bonus: float = 0.0,
    boundary: int = 1,
    end_boundary: bool = True,
    token_min_logp: float = -np.inf,
) -> list[tuple[tuple[int, ...], float]]:
    """CTC prefix beam search over float [frames, vocab] log-probabilities.

    Returns up to `beam_size` (prefix, score) pairs, best first; score = log p_ctc(prefix | x) (+ the fusion terms
    above when `lm` is an NGramLM over ids [0, vocab)). Tokens with frame log-prob below `token_min_logp` are not
    tried as extensions at that frame (a speed cut; -inf keeps every token).
    """
    lp = np.asarray(log_probs, np.float64)
    if lp.ndim != 2:
        raise ValueError(f"prefix_beam_search expects log_probs [frames, vocab], got shape {lp.shape}")
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    vocab = lp.shape[1]
    if lm is not None and lm.vocab_size != vocab:
        raise ValueError(f"the LM has vocab_size {lm.vocab_size}, the CTC outputs {vocab} ids")
    lmc = _LMCache(lm, boundary) if lm is not None and lm_weight != 0.0 else None

    # prefix -> [log p_b, log p_nb]; fusion: prefix -> lm_weight * log p_lm(prefix) + length_bonus * |prefix|
    beams: dict[tuple[int, ...], list[float]] = {(): [0.0, NEG_INF]}
    fusion: dict[tuple[int, ...], float] = {(): 0.0}

    def extend_score(prefix, c):
        if (prefix, c) not in ext_cache:
            s = fusion[prefix] + length_bonus
            if lmc is not None:
                s += lm_weight * lmc.log_probs(prefix)[c]
            ext_cache[(prefix, c)] = s
        return ext_cache[(prefix, c)]

    ext_cache: dict = {}
    for t in range(lp.shape[0]):
        frame = lp[t]
        tokens = [c for c in range(vocab) if c != blank and frame[c] >= token_min_logp]
        nxt: dict[tuple[int, ...], list[float]] = {}

        def add(prefix, b, nb, nxt=nxt):
            cur = nxt.setdefault(prefix, [NEG_INF, NEG_INF])
            cur[0], cur[1] = np.logaddexp(cur[0], b), np.logaddexp(cur[1], nb)

        for prefix, (pb, pnb) in beams.items():
            total = np.logaddexp(pb, pnb)
            last = prefix[-1] if prefix else None
            add(prefix, total + frame[blank], NEG_INF)  # blank: stays
            if last is not None:
                add(prefix, NEG_INF, pnb + frame[last])  # repeat merged
            for c in tokens:
                new = prefix + (c,)
                if new not in fusion:
                    fusion[new] = extend_score(prefix, c)
                # a repeated label needs a blank in between
                add(new, NEG_INF, (pb if c == last else total) + frame[c])
        ranked = sorted(nxt.items(), key=lambda kv: -(np.logaddexp(*kv[1]) + fusion[kv[0]]))
        ranked = [kv for kv in ranked if np.logaddexp(*kv[1]) > NEG_INF]  # unreachable (a repeat without blank)
        beams = dict(ranked[:beam_size])

    def final(prefix, masses):
        s = np.logaddexp(*masses) + fusion[prefix]
        if lmc is not None and end_boundary:
            s += lm_weight * lmc.log_probs(prefix)[boundary]
        return float(s)

    out = sorted(((p, final(p, m)) for p, m in beams.items()), key=lambda x: -x[1])
    return out[:beam_size]


def decode(
    log_probs: np.ndarray,
    method: str = "greedy",
    beam_size: int = 8,
    blank: int = 0,
    lm=None,
    lm_weight: float = 0.0,
    length_bonus: float = 0.0,
    boundary: int = 1,
    token_min_logp: float = -np.inf,
) -> tuple[int, ...]:
    """The best label-id tuple by `method`: "greedy", "beam" (no LM) or "beam_lm" (needs `lm`)."""
    if method == "greedy":
        return greedy(log_probs, blank)
    if method == "beam":
        return prefix_beam_search(log_probs, beam_size, blank, token_min_logp=token_min_logp)[0][0]
    if method == "beam_lm":
        if lm is None:
            raise ValueError("decoder 'beam_lm' needs an n-gram LM (lm=None)")
        return prefix_beam_search(
            log_probs, beam_size, blank, lm, lm_weight, length_bonus, boundary, token_min_logp=token_min_logp
        )[0][0]
    raise ValueError(f"decoder {method!r} is unknown; known: greedy, beam, beam_lm")
