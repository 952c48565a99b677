"""Synthetic implicit-feedback data with Zipf item popularity, for scale benchmarks and sequential-model tests
(pure numpy, seeded; millions of users / items fit: the sampler keeps one float64 CDF and one int32 id map).

Item popularity follows Zipf's law, P(rank r) ∝ 1 / (r + 1)^exponent for r = 0..num_items-1 (exponent ~1 is what
real catalogues show, e.g. Breslau et al. 1999 for web requests); ranks map to item ids through a seeded random
permutation, so popular items are spread over the rows of a row-sharded embedding table instead of all landing on
its first shard. Users are uniform.

- `ZipfSampler(num_items, exponent, seed)`: `.sample(rng, shape)` -> item ids int32, exact inverse-CDF draws.
- `interactions(num_users, num_items, size, ...)` -> (user int32 [size], item int32 [size]): independent
  (user, item) pairs, e.g. the batches of a two-tower / MF throughput benchmark.
- `sequences(num_users, num_items, length, ...)` -> int32 [num_users, length]: per user, a first item drawn by
  popularity, then each next item is the current item's fixed successor (a seeded random permutation `succ`)
  with probability `follow`, else a fresh popularity draw. A popularity ranking cannot exploit `succ`; a
  sequential model can (up to `follow` of the next items), which makes "beats popularity" a real test.
"""

import numpy as np


class ZipfSampler:
    """Item ids with P(id = perm[r]) ∝ 1 / (r + 1)^exponent; `probs()` gives that distribution per item id."""

    def __init__(self, num_items: int, exponent: float = 1.0, seed: int = 0):
        if num_items < 1:
            raise ValueError(f"num_items={num_items} must be >= 1")
        if exponent < 0:
            raise ValueError(f"exponent={exponent} must be >= 0")
        weights = 1.0 / np.arange(1, num_items + 1, dtype=np.float64) ** exponent
        self.cdf = np.cumsum(weights)
        self.cdf /= self.cdf[-1]
        self.perm = np.random.default_rng(seed).permutation(num_items).astype(np.int32)  # rank -> item id
        self.num_items, self.exponent = num_items, exponent

    def sample(self, rng: np.random.Generator, shape) -> np.ndarray:
        """int32 item ids of `shape`."""
        ranks = np.searchsorted(self.cdf, rng.random(shape), side="right")
        return self.perm[np.minimum(ranks, self.num_items - 1)]

    def probs(self) -> np.ndarray:
        """float64 [num_items]: the probability of each item id."""
        p = np.empty(self.num_items)
        p[self.perm] = np.diff(self.cdf, prepend=0.0)
        return p


def interactions(
    num_users: int, num_items: int, size: int, *, exponent: float = 1.0, seed: int = 0, sampler=None
) -> tuple[np.ndarray, np.ndarray]:
    """(user int32 [size] uniform over num_users, item int32 [size] Zipf over num_items); `sampler` reuses a
    `ZipfSampler` (its CDF costs O(num_items) to build)."""
    if num_users < 1 or size < 0:
        raise ValueError(f"num_users={num_users} must be >= 1 and size={size} >= 0")
    sampler = sampler or ZipfSampler(num_items, exponent, seed)
    if sampler.num_items != num_items:
        raise ValueError(f"sampler has {sampler.num_items} items, expected num_items={num_items}")
    rng = np.random.default_rng([seed, 1])
    users = rng.integers(0, num_users, size, dtype=np.int32)
    return users, sampler.sample(rng, size)


def sequences(
    num_users: int, num_items: int, length: int, *, follow: float = 0.8, exponent: float = 1.0, seed: int = 0
) -> np.ndarray:
    """int32 [num_users, length] item sequences (see the module docstring); the successor map is
    `successors(num_items, seed)`."""
    if length < 1:
        raise ValueError(f"length={length} must be >= 1")
    if not 0.0 <= follow <= 1.0:
        raise ValueError(f"follow={follow} must be in [0, 1]")
    sampler = ZipfSampler(num_items, exponent, seed)
    succ = successors(num_items, seed)
    rng = np.random.default_rng([seed, 2])
    fresh = sampler.sample(rng, (num_users, length))
    keep = rng.random((num_users, length)) < follow
    out = np.empty((num_users, length), np.int32)
    out[:, 0] = fresh[:, 0]
    for t in range(1, length):
        out[:, t] = np.where(keep[:, t], succ[out[:, t - 1]], fresh[:, t])
    return out


def successors(num_items: int, seed: int = 0) -> np.ndarray:
    """int32 [num_items]: the fixed next item of each item in `sequences` (a seeded random permutation)."""
    return np.random.default_rng([seed, 3]).permutation(num_items).astype(np.int32)
