"""N-gram language models over token ids in [0, vocab_size) (characters via `CharTokenizer`, bytes, BPE ids).

`NGramLM(order, vocab_size, smoothing).fit(train_ids)` counts every m-gram (m = 1..order) with numpy: an m-gram
is the integer key sum_j t_j * V^(m-1-j) (so V^order must fit in int64), counted with `np.unique`, and looked up
with `np.searchsorted`. p(w | h) uses the last order-1 tokens of h (fewer at the start of a sequence: then the
model of that lower order predicts). Smoothings, each a proper distribution over the V ids for every context:

- "addk": (c(hw) + k) / (c(h.) + k V), c(h.) = sum_w c(hw).
- "katz": Katz backoff. Seen: d_c c(hw) / c(h.) with Good-Turing discounts d_r for r <= 5 (d_r = 1 above;
  absolute discounting (r - D)/r where the Good-Turing estimates are not in (0, 1], and in the contexts whose
  continuations all occur more than 5 times, which Katz would leave no mass to back off with); unseen: alpha(h) p(w | h')
  with alpha(h) = (1 - sum_seen p(w|h)) / (1 - sum_seen p(w|h')); the order-0 model is uniform 1/V.
- "kn": interpolated Kneser-Ney, p(w|h) = [max(c(hw) - D, 0) + D N1+(h.) p(w|h')] / c(h.), p(w|h') when c(h.)
  = 0; raw counts at the top order, continuation counts N1+(.hw) (distinct left neighbours) below; one
  discount per order, D = n1 / (n1 + 2 n2) from that order's counts-of-counts unless given; order 0 uniform.

`log_prob_sequence`, `perplexity`, `bits_per_character` score a held-out id sequence (natural log / base 2).
"""

from collections.abc import Sequence

import numpy as np

SMOOTHINGS = ("addk", "katz", "kn")


def _ngram_keys(tokens: np.ndarray, m: int, vocab: int) -> np.ndarray:
    """int64 [len - m + 1]: the key of every m-gram of `tokens` (first token most significant)."""
    n = len(tokens) - m + 1
    keys = np.zeros(max(n, 0), np.int64)
    for j in range(m):
        keys = keys * vocab + tokens[j : j + n]
    return keys


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """values[k] where query == sorted_keys[k], else 0."""
    if len(sorted_keys) == 0:
        return np.zeros(query.shape, values.dtype)
    idx = np.minimum(np.searchsorted(sorted_keys, query), len(sorted_keys) - 1)
    return np.where(sorted_keys[idx] == query, values[idx], 0)


class _Table:
    """The m-grams of one order: sorted keys with counts, and per context (key // V) its total and type count."""

    def __init__(self, keys: np.ndarray, counts: np.ndarray, vocab: int):
        self.keys, self.counts = keys, counts.astype(np.float64)
        self.ctx_keys, self.inverse = np.unique(keys // vocab, return_inverse=True)
        self.ctx_total = np.bincount(self.inverse, self.counts, minlength=len(self.ctx_keys))
        self.ctx_types = np.bincount(self.inverse, minlength=len(self.ctx_keys)).astype(np.float64)

    def count_of_counts(self, r: int) -> int:
        return int(np.sum(self.counts == r))


def _absolute_discount(table: _Table) -> float:
    n1, n2 = table.count_of_counts(1), table.count_of_counts(2)
    return n1 / (n1 + 2 * n2) if n1 > 0 else 0.5


def _good_turing(table: _Table, max_r: int = 5) -> np.ndarray:
    """Katz's discount ratios d_r for r = 0..max_r (index r; d_0 unused); absolute discounting if GT is invalid."""
    n = np.array([table.count_of_counts(r) for r in range(max_r + 2)], np.float64)
    r = np.arange(1, max_r + 1)
    if np.all(n[1:] > 0):
        common = (max_r + 1) * n[max_r + 1] / n[1]
        d = ((r + 1) * n[r + 1] / (r * n[r]) - common) / (1 - common)
        if common < 1 and np.all((d > 0) & (d <= 1)):
            return np.concatenate([[1.0], d])
    return np.concatenate([[1.0], (r - _absolute_discount(table)) / r])


class NGramLM:
    """An n-gram model of `order` over ids [0, vocab_size); `smoothing` in SMOOTHINGS (see the module doc)."""

    def __init__(
        self, order: int, vocab_size: int, smoothing: str = "kn", *, k: float = 1.0, discount: float | None = None
    ):
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        if vocab_size < 1 or vocab_size**order >= 2**62:
            raise ValueError(f"vocab_size={vocab_size} must be >= 1 with vocab_size**order (order {order}) < 2**62")
        if smoothing not in SMOOTHINGS:
            raise ValueError(f"smoothing {smoothing!r} is unknown; known: {', '.join(SMOOTHINGS)}")
        if smoothing == "addk" and not k > 0:
            raise ValueError(f"k must be > 0 for add-k smoothing, got {k}")
        if discount is not None and not 0 < discount <= 1:
            raise ValueError(f"discount must be in (0, 1], got {discount}")
        self.order, self.vocab_size, self.smoothing = order, vocab_size, smoothing
        self.k, self.discount = k, discount
        self.tables: dict[int, _Table] = {}

    def _check(self, tokens: Sequence[int] | np.ndarray, what: str) -> np.ndarray:
        arr = np.asarray(tokens, np.int64).reshape(-1)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"{what} has ids outside [0, {self.vocab_size}) (vocab_size): [{arr.min()}, {arr.max()}]")
        return arr

    def fit(self, tokens: Sequence[int] | np.ndarray) -> "NGramLM":
        """Counts the m-grams (m = 1..order) of one training id sequence; returns self."""
        tokens = self._check(tokens, "tokens")
        if len(tokens) < self.order:
            raise ValueError(f"tokens has {len(tokens)} ids, fewer than order={self.order}")
        V = self.vocab_size
        raw = {m: np.unique(_ngram_keys(tokens, m, V), return_counts=True) for m in range(1, self.order + 1)}
        self.discounts, self.katz_d = {}, {}
        for m in range(1, self.order + 1):
            if self.smoothing == "kn" and m < self.order:  # continuation counts: distinct left neighbours
                keys, counts = np.unique(raw[m + 1][0] % V**m, return_counts=True)
            else:
                keys, counts = raw[m]
            table = self.tables[m] = _Table(keys, counts, V)
            if self.smoothing == "kn":
                self.discounts[m] = self.discount if self.discount is not None else _absolute_discount(table)
            elif self.smoothing == "katz":
                self._fit_katz(m, table)
        return self

    def _fit_katz(self, m: int, table: _Table) -> None:
        d = _good_turing(table)
        ratio = np.where(table.counts < len(d), d[np.minimum(table.counts, len(d) - 1).astype(int)], 1.0)
        pseen = ratio * table.counts / table.ctx_total[table.inverse]
        seen_mass = np.bincount(table.inverse, pseen, minlength=len(table.ctx_keys))
        # contexts whose continuations all occur > 5 times keep no mass for unseen ids: discount them absolutely
        starved = (seen_mass > 1 - 1e-12)[table.inverse]
        D = _absolute_discount(table)
        pseen = np.where(starved, (table.counts - D) / table.ctx_total[table.inverse], pseen)
        seen_mass = np.bincount(table.inverse, pseen, minlength=len(table.ctx_keys))
        V = self.vocab_size
        lower = self._prob(m - 1, (table.keys // V) % V ** max(m - 2, 0), table.keys % V)
        lower_mass = np.bincount(table.inverse, lower, minlength=len(table.ctx_keys))
        full = 1 - lower_mass <= 1e-12  # every id seen after this context: renormalise, nothing to back off to
        pseen = np.where(full[table.inverse], pseen / seen_mass[table.inverse], pseen)
        table.pseen = pseen
        table.alpha = np.where(full, 0.0, (1 - seen_mass) / np.where(full, 1.0, 1 - lower_mass))

    def _prob(self, m: int, ctx: np.ndarray, w: np.ndarray) -> np.ndarray:
        """p(w | ctx) under the order-m model; ctx: int64 keys of (m-1)-token contexts, w: int64 ids."""
        V = self.vocab_size
        if m == 0:
            return np.full(w.shape, 1.0 / V)
        t = self.tables[m]
        c = _lookup(t.keys, t.counts, ctx * V + w)
        total = _lookup(t.ctx_keys, t.ctx_total, ctx)
        if self.smoothing == "addk":
            return (c + self.k) / (total + self.k * V)
        lower = self._prob(m - 1, ctx % V ** max(m - 2, 0), w)
        if self.smoothing == "kn":
            D, types = self.discounts[m], _lookup(t.ctx_keys, t.ctx_types, ctx)
            return np.where(total > 0, (np.maximum(c - D, 0) + D * types * lower) / np.maximum(total, 1), lower)
        pseen = _lookup(t.keys, t.pseen, ctx * V + w)
        alpha = np.where(total > 0, _lookup(t.ctx_keys, t.alpha, ctx), 1.0)
        return np.where(c > 0, pseen, alpha * lower)

    def _context_key(self, context: np.ndarray) -> tuple[int, int]:
        context = context[len(context) - min(len(context), self.order - 1) :]
        key = 0
        for t in context:
            key = key * self.vocab_size + int(t)
        return len(context) + 1, key

    def _require_fit(self) -> None:
        if not self.tables:
            raise RuntimeError("the model is not fitted: call fit(tokens) first")

    def probs(self, context: Sequence[int] | np.ndarray) -> np.ndarray:
        """float64 [vocab_size]: p(w | context) for every id w (uses the last order-1 ids of context)."""
        self._require_fit()
        m, key = self._context_key(self._check(context, "context"))
        w = np.arange(self.vocab_size, dtype=np.int64)
        return self._prob(m, np.full(w.shape, key, np.int64), w)

    def prob(self, context: Sequence[int] | np.ndarray, token: int) -> float:
        """p(token | context)."""
        self._require_fit()
        m, key = self._context_key(self._check(context, "context"))
        w = self._check([token], "token")
        return float(self._prob(m, np.array([key], np.int64), w)[0])

    def token_log_probs(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """float64 [len]: ln p(t_i | t_{i-order+1..i-1}) for every position (shorter contexts at the start)."""
        self._require_fit()
        tokens = self._check(tokens, "tokens")
        out = np.empty(len(tokens))
        head = min(self.order - 1, len(tokens))
        for i in range(head):
            out[i] = np.log(self.prob(tokens[:i], int(tokens[i])))
        if len(tokens) > head:
            ctx = _ngram_keys(tokens[:-1], self.order - 1, self.vocab_size)
            out[head:] = np.log(self._prob(self.order, ctx, tokens[head:]))
        return out

    def log_prob_sequence(self, tokens: Sequence[int] | np.ndarray) -> float:
        """Natural-log probability of the whole id sequence."""
        return float(self.token_log_probs(tokens).sum())

    def perplexity(self, tokens: Sequence[int] | np.ndarray) -> float:
        """exp of the mean negative log-likelihood per token."""
        lp = self.token_log_probs(tokens)
        return float(np.exp(-lp.mean()))

    def bits_per_character(self, tokens: Sequence[int] | np.ndarray, num_chars: int | None = None) -> float:
        """-log2 p(tokens) / num_chars (num_chars defaults to len(tokens): character-level ids)."""
        lp = self.token_log_probs(tokens)
        return float(-lp.sum() / np.log(2) / (num_chars if num_chars is not None else len(lp)))
