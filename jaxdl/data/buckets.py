"""Length buckets for variable-length inputs (speech): each train batch holds examples of similar length and is
padded to the smallest of a few bucket lengths instead of one fixed length, so long examples need not be dropped
and batches of short ones cost less. A jitted step compiles once per bucket length (jit caches by shape).

`epoch_plan(lengths, buckets, batch_size, seed, epoch)` is a pure function of its arguments, so the train stream
stays a pure function of (seed, step) and exactly resumable (jaxdl.data.pipeline). The plan of an epoch:
every example goes to the smallest bucket that holds it; bucket by bucket, shortest first, the examples are
shuffled (seeded by (seed, epoch)) and cut into full batches; the remainder (< batch_size examples) moves up into
the next bucket's pool (they fit there too); the last remainder becomes one batch padded with rows -1 (the
loader reads them as masked rows, `mask` 0). So every example appears exactly once per epoch, the number of
batches per epoch does not depend on the seed, and finally the batches' order is shuffled.
"""

import numpy as np


def check_buckets(buckets, max_length: int, what: str = "config.data.buckets") -> tuple[int, ...]:
    """Strictly increasing positive ints, the last one at most `max_length` (the stored padded length)."""
    b = tuple(int(x) for x in buckets)
    if not b or any(x <= 0 for x in b) or any(x >= y for x, y in zip(b, b[1:], strict=False)):
        raise ValueError(f"{what}={tuple(buckets)}: expected strictly increasing positive lengths")
    if b[-1] > max_length:
        raise ValueError(f"{what}={b}: the largest bucket exceeds the stored input length {max_length}")
    return b


def assign(lengths: np.ndarray, buckets: tuple[int, ...], what: str = "dataset") -> np.ndarray:
    """int [n]: the index of the smallest bucket >= each length; a longer example raises naming its row."""
    lengths = np.asarray(lengths)
    idx = np.searchsorted(np.asarray(buckets), lengths, side="left")
    if (idx >= len(buckets)).any():
        row = int(np.argmax(idx >= len(buckets)))
        raise ValueError(f"{what}: example {row} has length {int(lengths[row])} > the largest bucket {buckets[-1]}")
    return idx


def epoch_plan(
    lengths: np.ndarray, buckets: tuple[int, ...], batch_size: int, seed: int, epoch: int
) -> tuple[np.ndarray, np.ndarray]:
    """(rows int64 [batches, batch_size] example indices, -1 on padding rows; bucket_lengths int64 [batches])."""
    which = assign(lengths, buckets)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch, 0xB0C])))
    batches, sizes, carry = [], [], np.zeros(0, np.int64)
    for k, size in enumerate(buckets):
        pool = np.concatenate([carry, rng.permutation(np.flatnonzero(which == k))])
        full = len(pool) // batch_size * batch_size
        batches += list(pool[:full].reshape(-1, batch_size))
        sizes += [size] * (full // batch_size)
        carry = pool[full:]
    if len(carry):
        batches.append(np.concatenate([carry, np.full(batch_size - len(carry), -1, np.int64)]))
        sizes.append(buckets[-1])
    order = rng.permutation(len(batches))
    return np.stack(batches)[order].astype(np.int64), np.asarray(sizes, np.int64)[order]


def num_batches(lengths: np.ndarray, buckets: tuple[int, ...], batch_size: int) -> int:
    """Batches per epoch of `epoch_plan` (the same for every seed and epoch): ceil(n / batch_size)."""
    assign(lengths, buckets)
    return -(-len(lengths) // batch_size)
