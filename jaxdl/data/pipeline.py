"""Input pipeline: deterministic, resumable, host-sharded batches prefetched onto devices.

The train stream is a pure function of (seed, step): epoch e = step // steps_per_epoch reads the examples in
the order of a permutation seeded by (seed, e) (`order="shuffle"`) or in source order every epoch
(`order="sequential"`: the fixed batches of a plain `x[i*B:(i+1)*B]` loop), so resuming at step s is `iterate(s)`
and nothing else. Each process reads only its slice of every global batch and the global array is assembled with
`jax.make_array_from_process_local_data`.

Sources held in memory (jaxdl.data.memory, `config.data.cache`) make a host batch a fancy index, made inline when
the trainer asks (dispatch is asynchronous, so it overlaps the running step); sources on disk decode their
examples per batch, ahead of the step, in a Grain iterator over step numbers
(`grain.MapDataset.range(start, ...).map(device_batch)`, `workers` threads, order kept, `prefetch` batches
already on device). Either way the iterator's whole state is the next step, which the checkpoint holds.

Length buckets (`buckets`, jaxdl.data.buckets): the epoch's batches come from `buckets.epoch_plan` (examples of
similar `input_length` together, each batch's "input" cut to its bucket length along axis 1, a float32 "mask"
[batch] that is 0 on the padding rows of the epoch's last batch) instead of a permutation cut into batches.
"""

import math
from collections.abc import Iterator

import grain
import jax
import numpy as np
from jax.sharding import NamedSharding

from jaxdl.data import buckets as length_buckets
from jaxdl.data.augment import Augment
from jaxdl.data.memory import InMemorySource, read
from jaxdl.data.registry import preprocess

_NO_END = 2**62  # the train stream has no last step: the trainer stops asking
STREAM_WORKERS = 2  # threads decoding a streamed split (config.data.workers=-1)


def _num_batch_shards(sharding: NamedSharding | None) -> int:
    if sharding is None or not sharding.spec or sharding.spec[0] is None:
        return 1
    axes = sharding.spec[0] if isinstance(sharding.spec[0], tuple) else (sharding.spec[0],)
    return math.prod(sharding.mesh.shape[a] for a in axes)


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    return (
        jax.process_index() if process_index is None else process_index,
        jax.process_count() if process_count is None else process_count,
    )


ORDERS = ("shuffle", "sequential")  # config.data.order


def _check_batch(batch_size: int, process_count: int, sharding: NamedSharding | None, what: str) -> None:
    if batch_size % process_count:
        raise ValueError(f"{what}={batch_size} is not divisible by the {process_count} processes")
    shards = _num_batch_shards(sharding)
    if batch_size % shards:
        raise ValueError(f"{what}={batch_size} is not divisible by the {shards} batch shards of the mesh")


def _to_device(batch: dict[str, np.ndarray], sharding: NamedSharding | None, global_rows: int) -> dict:
    if sharding is None:
        return jax.device_put(batch)
    return {
        k: jax.make_array_from_process_local_data(sharding, v, (global_rows, *v.shape[1:])) for k, v in batch.items()
    }


class TrainLoader:
    """Batches of `dataset` for steps 0, 1, 2, ...; `global_batch_size` rows per step over all processes."""

    def __init__(
        self,
        source,
        *,
        dataset: str,
        global_batch_size: int,
        seed: int,
        sharding: NamedSharding | None = None,
        process_index: int | None = None,
        process_count: int | None = None,
        prefetch: int = 2,
        augment: Augment | None = None,
        order: str = "shuffle",
        workers: int = -1,
        buckets: tuple[int, ...] = (),
    ):
        """`augment(batch, rng)` (jaxdl.data.augment) transforms each preprocessed host batch; its generator is
        seeded by (seed, step, process index). `order`: "shuffle" (a permutation per epoch) or "sequential"
        (source order every epoch; the remainder of len(source) // global_batch_size is never read). `workers`:
        threads making batches ahead; 0: inline, when the trainer asks; -1: inline for an `InMemorySource` (a
        fancy index costs less than a hand-off between threads: 1.31 vs 1.50 ms per main-job step on 2 cores),
        else `STREAM_WORKERS` threads (decoding from disk releases the GIL in part). `buckets`: increasing
        lengths of "input" axis 1 to pad batches to (needs "input_length" in the preprocessed batch; () = off)."""
        if order not in ORDERS:
            raise ValueError(f"config.data.order={order!r} is not one of {ORDERS}")
        self.order = order
        self.source, self.dataset, self.seed, self.augment = source, dataset, seed, augment
        self.batch_size, self.sharding, self.prefetch = global_batch_size, sharding, max(prefetch, 1)
        if workers < -1:
            raise ValueError(f"config.data.workers must be >= -1, got {workers}")
        self.workers = workers if workers >= 0 else (0 if isinstance(source, InMemorySource) else STREAM_WORKERS)
        self.process_index, self.process_count = _process(process_index, process_count)
        _check_batch(global_batch_size, self.process_count, sharding, "config.data.batch_size")
        if global_batch_size > len(source):
            raise ValueError(f"config.data.batch_size={global_batch_size} exceeds the {len(source)} examples")
        self.steps_per_epoch = len(source) // global_batch_size
        self._perms: dict[int, np.ndarray] = {}
        self.buckets: tuple[int, ...] = ()
        if buckets:
            self.buckets, self.lengths = self._bucket_lengths(buckets)
            self.steps_per_epoch = length_buckets.num_batches(self.lengths, self.buckets, global_batch_size)
            self._plans: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._iterators: list = []

    def _bucket_lengths(self, buckets) -> tuple[tuple[int, ...], np.ndarray]:
        """(checked buckets, int [n] "input_length" of every example), preprocessing the source in chunks."""
        if self.order != "shuffle":
            raise ValueError(f"config.data.buckets needs config.data.order='shuffle', got {self.order!r}")
        what = f"dataset {self.dataset!r}"
        lengths, width = [], None
        for start in range(0, len(self.source), 1024):
            b = preprocess(self.dataset, read(self.source, np.arange(start, min(start + 1024, len(self.source)))))
            if "input_length" not in b or b["input"].ndim < 2:
                raise ValueError(f"config.data.buckets: {what} has no 'input_length' / no length axis in 'input'")
            lengths.append(np.asarray(b["input_length"]))
            width = b["input"].shape[1]
        checked = length_buckets.check_buckets(buckets, width)
        lengths = np.concatenate(lengths)
        length_buckets.assign(lengths, checked, what)
        return checked, lengths

    def bucket_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows [steps_per_epoch, batch] with -1 padding, bucket length [steps_per_epoch]) of `epoch`."""
        plan = self._plans.get(epoch)
        if plan is None:  # a pure function of (seed, epoch): threads that race here compute the same plan
            plan = length_buckets.epoch_plan(self.lengths, self.buckets, self.batch_size, self.seed, epoch)
            self._plans = {epoch: plan}  # keep one epoch: memory stays flat
        return plan

    def permutation(self, epoch: int) -> np.ndarray:
        """The example order of `epoch`, seeded by (seed, epoch); the identity for order="sequential"."""
        if self.order == "sequential":
            return np.arange(len(self.source))
        if epoch not in self._perms:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, epoch])))
            self._perms = {epoch: rng.permutation(len(self.source))}  # keep one epoch: memory stays flat
        return self._perms[epoch]

    def global_indices(self, step: int) -> np.ndarray:
        epoch, offset = divmod(step, self.steps_per_epoch)
        if self.buckets:
            return self.bucket_plan(epoch)[0][offset]
        return self.permutation(epoch)[offset * self.batch_size : (offset + 1) * self.batch_size]

    def host_batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's preprocessed slice of the global batch of `step`: a pure function of (seed, step)."""
        per = self.batch_size // self.process_count
        rows = self.global_indices(step)[self.process_index * per : (self.process_index + 1) * per]
        batch = preprocess(self.dataset, read(self.source, np.maximum(rows, 0), what=f"dataset {self.dataset!r}"))
        if self.buckets:
            epoch, offset = divmod(step, self.steps_per_epoch)
            batch["input"] = batch["input"][:, : self.bucket_plan(epoch)[1][offset]]
            batch["mask"] = (rows >= 0).astype(np.float32)
        if self.augment is not None:
            seq = np.random.SeedSequence([self.seed, step, self.process_index, 0xA06])
            batch = self.augment(batch, np.random.Generator(np.random.PCG64(seq)))
        return batch

    def device_batch(self, step: int) -> dict[str, jax.Array]:
        """The global batch of `step` on the devices (this process's slice from `host_batch`)."""
        return _to_device(self.host_batch(step), self.sharding, self.batch_size)

    def iterate(self, start_step: int) -> Iterator[dict[str, jax.Array]]:
        """Batches for steps start_step, start_step + 1, ..., produced ahead by `workers` threads as device arrays;
        with workers=0, in the caller's thread when it asks: device arrays, or in a one-process job the host arrays
        themselves, which the jitted step transfers with its input shardings (an explicit device_put per batch
        costs 0.15-0.3 ms on the reference CPU, more than the whole in-memory batch; jit's own transfer ~15 us)."""
        if self.workers == 0:
            make = self.host_batch if self.process_count == 1 else self.device_batch
            return (make(s) for s in range(start_step, _NO_END))
        steps = grain.MapDataset.range(start_step, _NO_END).map(self.device_batch)
        options = grain.ReadOptions(num_threads=self.workers, prefetch_buffer_size=self.prefetch)
        it = iter(steps.to_iter_dataset(options))
        self._iterators.append(it)

        def consume():
            while True:
                try:
                    batch = next(it)
                except Exception as e:  # a worker's error, re-raised here with the dataset named
                    raise RuntimeError(f"input pipeline for {self.dataset!r} failed") from e
                yield batch

        return consume()

    def close(self) -> None:
        for it in self._iterators:
            it.close()
        self._iterators = []


def eval_batches(
    source,
    *,
    dataset: str,
    batch_size: int,
    sharding: NamedSharding | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict[str, jax.Array]]:
    """Every example once, in source order; each batch has "mask" (float32 [batch], 0 on padding rows)."""
    pi, pc = _process(process_index, process_count)
    _check_batch(batch_size, pc, sharding, "config.data.eval_batch_size")
    n, per = len(source), batch_size // pc
    for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size)[pi * per : (pi + 1) * per]
        mask = (idx < n).astype(np.float32)
        batch = preprocess(dataset, read(source, np.where(idx < n, idx, 0), what=f"dataset {dataset!r}"))
        batch["mask"] = mask
        yield _to_device(batch, sharding, batch_size)
