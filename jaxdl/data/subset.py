"""Label-fraction subsets of a training split (`config.data.train_fraction`), for few-label experiments.

The subset is class-stratified: round(fraction * n_c) examples of every class c (at least one each), chosen with
a generator seeded by `seed`, so every class is present even at 1 % of a small dataset and a given (seed,
fraction) always names the same examples.
"""

import numpy as np

from jaxdl.data.memory import read


class Subset:
    """`source` restricted to `indices` (same random-access interface: len, [i], __getitems__)."""

    def __init__(self, source, indices: np.ndarray):
        self.source, self.indices = source, np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.source[int(self.indices[i])]

    def __getitems__(self, idx):
        picked = [int(self.indices[i]) for i in idx]
        if hasattr(self.source, "__getitems__"):
            return self.source.__getitems__(picked)
        return [self.source[i] for i in picked]


def read_labels(source, key: str, chunk: int = 4096) -> np.ndarray:
    n = len(source)
    return np.concatenate([read(source, range(s, min(s + chunk, n)))[key] for s in range(0, n, chunk)])


def stratified_indices(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of round(fraction * n_c) (>= 1) random examples of each class."""
    if not 0 < fraction <= 1:
        raise ValueError(f"config.data.train_fraction must be in (0, 1], got {fraction}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0x5B5E7])))
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = max(1, int(round(fraction * len(members))))
        picked.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(picked))


def label_fraction(source, key: str, fraction: float, seed: int):
    """`source` itself when fraction == 1, else its stratified `fraction` subset."""
    if fraction == 1:
        return source
    return Subset(source, stratified_indices(read_labels(source, key), fraction, seed))
