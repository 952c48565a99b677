"""Trivial baselines for "it learns" tests, computed from the very labels the test evaluates on.

A test that says a model learned must beat what a model that ignores its input can reach on the same data:
- `entropy(labels)`: nats per label of the labels' own empirical distribution. No predictor that ignores its
  input (a constant distribution q) has a lower mean cross-entropy on these labels: CE(p, q) = H(p) + KL(p || q).
  For a byte LM it is the floor of a model that sees no context.
- `per_position_entropy(labels)`: the same with one distribution per position (axis 1): the floor of a
  model that sees only where in the sequence it is (a decoder that ignores its source, up to the little its own
  prefix tells it).
- `majority_accuracy(labels)`: the accuracy of always predicting the most frequent label.
Labels < 0 are ignored everywhere (padding), as in the losses.

`MARGIN` is how far below such a floor a loss must be to count as learned. The floors are exact in-sample optima,
so an input-blind model trained on another split ends a little above them (measured 0.02-0.04 nats above, with
the input zeroed or the source fixed); trainer runs are deterministic per seed. So the margin is not for noise: it
asks for a real effect, a perplexity 22 % below the best an input-blind model can reach (exp(-0.25) = 0.78); on
pydoc bytes it is a third of the way from the unigram (3.23 nats) to a bigram model (2.45).
"""

import numpy as np

from jaxdl import config as config_lib
from jaxdl import data

MARGIN = 0.25  # nats per label


def eval_labels(name: str, data_dir: str, split: str | None = None) -> np.ndarray:
    """int [examples, ...]: the preprocessed labels of the whole `split` of dataset `name` (default: the
    trainer's evaluation split, `config.data.eval_split`), exactly what the evaluation averages over."""
    source = data.load(name, split or config_lib.base().data.eval_split, data_dir)
    rows = [source[i] for i in range(len(source))]
    examples = {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}
    return np.asarray(data.preprocess(name, examples)["label"])


def _entropy_of(labels: np.ndarray) -> tuple[float, int]:
    """(sum over valid labels of -log p(label) under their empirical distribution p, number of valid labels)."""
    labels = labels[labels >= 0]
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    return float(-(counts * np.log(counts / labels.size)).sum()), int(labels.size)


def entropy(labels: np.ndarray) -> float:
    """Nats per valid label of the empirical label distribution (unigram entropy)."""
    total, n = _entropy_of(np.asarray(labels).ravel())
    return total / n


def per_position_entropy(labels: np.ndarray) -> float:
    """labels int [examples, positions, ...]: nats per valid label when each position has its own empirical
    distribution."""
    labels = np.asarray(labels)
    parts = [_entropy_of(labels[:, t].ravel()) for t in range(labels.shape[1])]
    return sum(s for s, _ in parts) / sum(n for _, n in parts)


def majority_accuracy(labels: np.ndarray) -> float:
    """The fraction of valid labels equal to the most frequent one."""
    labels = np.asarray(labels).ravel()
    labels = labels[labels >= 0]
    return float(np.bincount(labels).max() / labels.size)
