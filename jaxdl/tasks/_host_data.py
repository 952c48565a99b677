"""A dataset split held on the host for tasks that draw their own batches inside the step (`produces_batches`):
DP-SGD's Poisson samples (`dp_classify`), federated clients' local datasets (`fedavg`).

The raw examples are read once (e.g. Fashion-MNIST train: uint8 [60000, 28, 28, 1], 47 MB); the step computes
which rows it wants from its key and fetches them with `jax.pure_callback`, preprocessed by the dataset's own
`preprocess` (`jaxdl.data.registry`), so a batch is a pure function of (seed, step) and resume is exact.
"""

import functools

import jax
import numpy as np


@functools.lru_cache(maxsize=4)
def split_columns(dataset: str, split: str = "train", data_dir: str = "") -> dict[str, np.ndarray]:
    """The preprocessed columns of a whole split (`jaxdl.data.registry.preprocess` of every example), read once per
    process: what a task counts on its training data (group weights, each user's interactions)."""
    from jaxdl.data.registry import preprocess

    return preprocess(dataset, HostSplit(dataset, split, data_dir).raw)


class HostSplit:
    def __init__(self, dataset: str, split: str = "train", data_dir: str = ""):
        self.dataset, self.split, self.data_dir = dataset, split, data_dir
        self._raw: dict[str, np.ndarray] | None = None

    @property
    def raw(self) -> dict[str, np.ndarray]:
        """Every example of the split, stacked (loaded on first use)."""
        if self._raw is None:
            from jaxdl import data

            source = data.load(self.dataset, self.split, self.data_dir or None)
            self._raw = data.memory.read(source, np.arange(len(source)), what=f"dataset {self.dataset!r}")
        return self._raw

    def __len__(self) -> int:
        return len(next(iter(self.raw.values())))

    def labels(self) -> np.ndarray:
        """int64 [N] labels (the `label` the preprocess returns), for class-based partitions."""
        return self.fetch(np.arange(len(self)))["label"].astype(np.int64)

    def fetch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """{"input": float32 [*indices.shape, ...], "label": int32 [*indices.shape]} of the given rows."""
        from jaxdl.data.registry import preprocess

        idx = np.asarray(indices)
        batch = preprocess(self.dataset, {k: v[idx.reshape(-1)] for k, v in self.raw.items()})
        return {
            "input": batch["input"].astype(np.float32).reshape(*idx.shape, *batch["input"].shape[1:]),
            "label": batch["label"].astype(np.int32).reshape(idx.shape),
        }

    def gather(self, indices: jax.Array) -> dict[str, jax.Array]:
        """`fetch` inside a traced step (int32 indices of any static shape)."""
        example = self.fetch(np.zeros(1, np.int64))
        shapes = {k: jax.ShapeDtypeStruct((*indices.shape, *v.shape[1:]), v.dtype) for k, v in example.items()}
        return jax.pure_callback(self.fetch, shapes, indices, vmap_method="sequential")
