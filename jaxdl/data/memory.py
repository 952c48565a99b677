"""Splits decoded once into host memory: batches become a fancy index instead of per-example decoding.

Reading a batch from array_record decodes its examples one by one in Python (5–9 ms per batch of 100–128 on the
reference CPU, 4–7× the compiled train step of the main job). A split that fits `budget_mb` is read once, in
chunks, into one numpy array per feature (`InMemorySource`); a batch is then `array[indices]` for every feature,
the same bytes as stacking the decoded examples, so both paths give identical batches for the same (seed, step).
Splits over the budget stay on disk and stream (jaxdl.data.pipeline reads them with Grain threads).

`config.data.cache`: "auto" (in memory when the split fits `config.data.memory_budget_mb`, else stream),
"memory" (in memory or an error naming the size and the budget), "stream" (never cache).
"""

import logging
from collections.abc import Sequence

import numpy as np

from jaxdl.config import CACHE_MODES

log = logging.getLogger(__name__)

_CHUNK = 1024  # rows decoded per read while filling the cache


def rows(source, indices: Sequence[int]) -> list[dict]:
    """The decoded examples `indices` of a random-access source (`__getitems__` when it has one)."""
    idx = [int(i) for i in indices]
    return source.__getitems__(idx) if hasattr(source, "__getitems__") else [source[i] for i in idx]


def stack(examples: list[dict]) -> dict[str, np.ndarray]:
    """Decoded examples -> {feature: array [len(examples), ...]}."""
    return {k: np.stack([np.asarray(e[k]) for e in examples]) for k in examples[0]}


def read(source, indices: Sequence[int] | np.ndarray, *, what: str = "") -> dict[str, np.ndarray]:
    """Stacked features of the examples `indices` of `source`: a fancy index on an `InMemorySource`, else decoded
    examples. A read that fails (a corrupt or truncated array_record shard) raises naming `what` and the rows."""
    if isinstance(source, InMemorySource):
        return source.take(np.asarray(indices))
    try:
        return stack(rows(source, indices))
    except Exception as e:
        lo, hi = (int(np.min(indices)), int(np.max(indices))) if len(indices) else (0, -1)
        raise OSError(
            f"{what or 'dataset'}: could not read examples {lo}..{hi}{_files(source)} ({type(e).__name__}: {e})"
        ) from e


def _files(source) -> str:
    """Where a TFDS data source reads from, for error messages ("" for other sources)."""
    info = getattr(source, "dataset_info", None)
    if info is None:
        return ""
    return f" of the {source.split!r} array_record files in {info.data_dir}"


class InMemorySource:
    """A split as {feature: array [n, ...]}; the random-access interface of a TFDS data source (len, [i],
    __getitems__) plus `take(indices) -> {feature: array [len(indices), ...]}`."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        sizes = {k: len(v) for k, v in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"features have different numbers of rows: {sizes}")
        self.arrays = arrays
        for v in arrays.values():
            v.flags.writeable = False  # batches are views or copies of these: nothing may write into the cache
        self._n = next(iter(sizes.values()))

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.arrays.values())

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {k: v[int(i)] for k, v in self.arrays.items()}

    def __getitems__(self, idx: Sequence[int]) -> list[dict[str, np.ndarray]]:
        return [self[i] for i in idx]

    def take(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[indices] for k, v in self.arrays.items()}


def check_cache_config(mode: str, budget_mb: float) -> None:
    """Errors name the bad config.data key (before any data is read)."""
    if mode not in CACHE_MODES:
        raise ValueError(f"config.data.cache={mode!r} is not one of {CACHE_MODES}")
    if not budget_mb > 0:
        raise ValueError(
            f"config.data.memory_budget_mb must be > 0, got {budget_mb} (use config.data.cache='stream' to never "
            "hold a split in memory)"
        )


def cache(source, *, mode: str = "auto", budget_mb: float = 4096, what: str = "dataset"):
    """`source` decoded into an `InMemorySource` when `mode` and `budget_mb` allow, else `source` itself.

    The size is estimated from the first chunk (every feature has a fixed shape per split) before the rest is
    read, so a split over the budget costs one chunk, not a full pass."""
    check_cache_config(mode, budget_mb)
    if mode == "stream" or isinstance(source, InMemorySource) or len(source) == 0:
        return source
    n = len(source)
    first = read(source, range(min(_CHUNK, n)), what=what)
    per_row = sum(v.nbytes for v in first.values()) / len(next(iter(first.values())))
    need_mb = per_row * n / 2**20
    if need_mb > budget_mb:
        if mode == "memory":
            raise ValueError(
                f"{what}: {n} examples need {need_mb:.1f} MB decoded, over config.data.memory_budget_mb="
                f"{budget_mb:g} (raise it, or set config.data.cache='auto' to stream)"
            )
        log.info("%s: %.1f MB decoded is over the %g MB budget: streaming", what, need_mb, budget_mb)
        return source
    arrays = {k: np.empty((n, *v.shape[1:]), v.dtype) for k, v in first.items()}
    for start in range(0, n, _CHUNK):
        chunk = first if start == 0 else read(source, range(start, min(start + _CHUNK, n)), what=what)
        for k, v in chunk.items():
            if k not in arrays or v.shape[1:] != arrays[k].shape[1:] or v.dtype != arrays[k].dtype:
                raise ValueError(
                    f"{what}: feature {k!r} of examples from {start} is {v.dtype}{list(v.shape[1:])}, the first "
                    f"examples' is {arrays[k].dtype}{list(arrays[k].shape[1:])}: it cannot be held as one array"
                )
            arrays[k][start : start + len(v)] = v
    out = InMemorySource(arrays)
    log.info("%s: %d examples in memory (%.1f MB)", what, n, out.nbytes / 2**20)
    return out
