"""Skip-gram with negative sampling (SGNS, Mikolov et al. 2013), trained with a jitted optax step.

- Tokens: `tokenize(text)` lower-cases and keeps runs of letters/digits (with inner apostrophes: "don't"); every
  other character (whitespace, punctuation) separates words. A corpus is a list of sentences (token lists);
  context windows never cross a sentence.
- `Vocab.build(sentences, min_count)`: the words seen >= min_count times, sorted by decreasing count (ties
  alphabetical); rarer words are dropped from the sentences before windows are taken, as in word2vec.
- Each epoch (numpy, `np.random.default_rng(seed + epoch)`): frequent words are subsampled, word w kept with
  probability min(1, sqrt(t / f_w) + t / f_w) (f_w its frequency; word2vec's C formula); each kept center gets a
  window b ~ U{1..window} and pairs (center, context) with every kept word within b positions in its sentence;
  the pairs are shuffled and cut into batches, each pair with `negatives` ids drawn from unigram^0.75.
- Loss per pair: -log sigmoid(u_c . v_w) - sum_k log sigmoid(-u_k . v_w) (v: input vectors of the centers,
  u: output vectors; a negative equal to the pair's context is masked out). Input vectors start uniform in
  [-0.5/dim, 0.5/dim], output vectors at 0 (as in word2vec), so the first loss is (1 + negatives) log 2.
  Optimizer: optax Adam with a linear decay of the learning rate to 0 over the steps.
- Same sentences + same config -> same vectors (bitwise on CPU). Queries on the L2-normalised input vectors:
  `nearest(word)` (cosine, the word itself excluded) and `analogy(a, b, c)`: the words closest to a - b + c, the
  three query words excluded ("king" - "man" + "woman" -> "queen").
"""

import dataclasses
import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """The words of `text` (letters/digits with inner apostrophes); punctuation and whitespace separate them."""
    return _WORD.findall(text.lower() if lowercase else text)


@dataclasses.dataclass(frozen=True)
class Vocab:
    """words[i] has id i and corpus count counts[i] (decreasing)."""

    words: tuple[str, ...]
    counts: np.ndarray

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int = 5) -> "Vocab":
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counter = Counter(str(w) for s in sentences for w in s)
        kept = sorted((w for w, c in counter.items() if c >= min_count), key=lambda w: (-counter[w], w))
        if len(kept) < 2:
            raise ValueError(f"only {len(kept)} words occur >= min_count={min_count} times; need at least 2")
        return cls(tuple(kept), np.array([counter[w] for w in kept], np.int64))

    def __post_init__(self):
        object.__setattr__(self, "index", {w: i for i, w in enumerate(self.words)})

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, sentence: Sequence[str]) -> np.ndarray:
        """int32 ids of the in-vocabulary words of a sentence (others dropped)."""
        return np.array([self.index[str(w)] for w in sentence if str(w) in self.index], np.int32)

    def id(self, word: str) -> int:
        if word not in self.index:
            raise KeyError(f"word {word!r} is not in the vocabulary ({len(self)} words, min_count applied)")
        return self.index[word]


@dataclasses.dataclass(frozen=True)
class Config:
    dim: int = 100
    window: int = 5
    negatives: int = 5
    min_count: int = 5
    subsample: float = 1e-3  # t; 0 disables subsampling
    power: float = 0.75  # of the unigram counts for the negatives
    batch_size: int = 1024
    steps: int = 2000
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self):
        for name in ("dim", "window", "negatives", "min_count", "batch_size", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"word2vec config {name} must be >= 1, got {getattr(self, name)}")
        if self.subsample < 0 or self.lr <= 0:
            raise ValueError(f"word2vec config needs subsample >= 0 and lr > 0, got {self.subsample}, {self.lr}")


def keep_probs(counts: np.ndarray, t: float) -> np.ndarray:
    """Probability of keeping each word in an epoch: min(1, sqrt(t / f) + t / f), f = count / total."""
    if t <= 0:
        return np.ones(len(counts))
    ratio = t / (counts / counts.sum())
    return np.minimum(1.0, np.sqrt(ratio) + ratio)


def skipgram_pairs(sentences: Sequence[np.ndarray], window: int, keep: np.ndarray, rng: np.random.Generator):
    """(centers, contexts) int32 [pairs] of one epoch: subsampling, then dynamic windows within sentences."""
    ids = np.concatenate(sentences) if sentences else np.zeros(0, np.int32)
    sent = np.repeat(np.arange(len(sentences)), [len(s) for s in sentences])
    kept = rng.random(len(ids)) < keep[ids]
    ids, sent = ids[kept], sent[kept]
    reach = rng.integers(1, window + 1, len(ids))  # each center's window b
    centers, contexts = [], []
    for d in range(1, window + 1):
        for a, b in ((slice(d, None), slice(None, -d)), (slice(None, -d), slice(d, None))):  # context left / right
            ok = (sent[a] == sent[b]) & (reach[a] >= d)
            centers.append(ids[a][ok])
            contexts.append(ids[b][ok])
    return np.concatenate(centers).astype(np.int32), np.concatenate(contexts).astype(np.int32)


def sgns_loss(params: dict, centers: jax.Array, contexts: jax.Array, negatives: jax.Array) -> jax.Array:
    """Mean SGNS loss of a batch: centers, contexts int [B], negatives int [B, K]."""
    v = params["input"][centers]  # [B, dim]
    pos = jnp.einsum("bd,bd->b", v, params["output"][contexts])
    neg = jnp.einsum("bd,bkd->bk", v, params["output"][negatives])
    neg_mask = (negatives != contexts[:, None]).astype(jnp.float32)
    return -jnp.mean(jax.nn.log_sigmoid(pos) + jnp.sum(neg_mask * jax.nn.log_sigmoid(-neg), axis=1))


@functools.cache
def _optimizer_and_step(lr: float, steps: int):
    """Adam with a linear decay to 0 and its jitted SGNS step (cached: one compile per config and shape)."""
    opt = optax.adam(optax.linear_schedule(lr, 0.0, steps))

    @jax.jit
    def step(params, opt_state, centers, contexts, negatives):
        loss, grads = jax.value_and_grad(sgns_loss)(params, centers, contexts, negatives)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return opt, step


class Word2Vec:
    """Trained SGNS vectors: `Word2Vec.train(sentences, config)`; `.vectors` float32 [V, dim], `.losses` per step."""

    def __init__(self, vocab: Vocab, vectors: np.ndarray, losses: np.ndarray, config: Config):
        self.vocab, self.vectors, self.losses, self.config = vocab, vectors, losses, config
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self._unit = vectors / np.maximum(norms, 1e-12)

    @classmethod
    def train(cls, sentences: Sequence[Sequence[str]], config: Config = Config()) -> "Word2Vec":
        vocab = Vocab.build(sentences, config.min_count)
        encoded = [e for e in (vocab.encode(s) for s in sentences) if len(e) > 1]
        keep = keep_probs(vocab.counts, config.subsample)
        noise = vocab.counts.astype(np.float64) ** config.power
        noise_cdf = np.cumsum(noise / noise.sum())
        V, dim, B, K = len(vocab), config.dim, config.batch_size, config.negatives
        key = jax.random.key(config.seed)
        params = {
            "input": jax.random.uniform(key, (V, dim), jnp.float32, -0.5 / dim, 0.5 / dim),
            "output": jnp.zeros((V, dim), jnp.float32),
        }
        opt, step = _optimizer_and_step(config.lr, config.steps)
        opt_state = opt.init(params)

        losses, epoch, done = [], 0, 0
        while done < config.steps:
            rng = np.random.default_rng([config.seed, epoch])
            centers, contexts = skipgram_pairs(encoded, config.window, keep, rng)
            if len(centers) < B:
                raise ValueError(f"an epoch gives {len(centers)} pairs, fewer than batch_size={B}: corpus too small")
            order = rng.permutation(len(centers))
            for start in range(0, len(order) - B + 1, B):
                if done == config.steps:
                    break
                batch = order[start : start + B]
                negatives = np.searchsorted(noise_cdf, rng.random((B, K)), side="right").clip(max=V - 1)
                params, opt_state, loss = step(
                    params, opt_state, centers[batch], contexts[batch], negatives.astype(np.int32)
                )
                losses.append(loss)
                done += 1
            epoch += 1
        return cls(vocab, np.asarray(params["input"]), np.asarray(jnp.stack(losses)), config)

    def _ranked(self, query: np.ndarray, exclude: Sequence[int], k: int) -> list[tuple[str, float]]:
        scores = self._unit @ (query / max(np.linalg.norm(query), 1e-12))
        scores[list(exclude)] = -np.inf
        best = np.argsort(-scores, kind="stable")[:k]
        return [(self.vocab.words[i], float(scores[i])) for i in best]

    def nearest(self, word: str, k: int = 5) -> list[tuple[str, float]]:
        """The k words of highest cosine similarity to `word` (itself excluded), with their similarities."""
        i = self.vocab.id(word)
        return self._ranked(self._unit[i], [i], k)

    def analogy(self, a: str, b: str, c: str, k: int = 1) -> list[tuple[str, float]]:
        """The k words closest (cosine) to a - b + c on unit vectors, a, b and c excluded."""
        ia, ib, ic = (self.vocab.id(w) for w in (a, b, c))
        return self._ranked(self._unit[ia] - self._unit[ib] + self._unit[ic], [ia, ib, ic], k)
