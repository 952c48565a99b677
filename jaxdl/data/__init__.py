"""Offline datasets (TFDS array_record builders) and the input pipeline."""

from jaxdl.data import augment, memory, subset
from jaxdl.data.pipeline import TrainLoader, eval_batches
from jaxdl.data.registry import DATASETS, builder, default_data_dir, info, label_counts, load, preprocess

__all__ = [
    "DATASETS",
    "TrainLoader",
    "augment",
    "builder",
    "default_data_dir",
    "eval_batches",
    "info",
    "label_counts",
    "load",
    "memory",
    "preprocess",
    "subset",
]
