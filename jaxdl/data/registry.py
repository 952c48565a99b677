"""Dataset registry: name -> (TFDS builder class, builder config, preprocess). One line per dataset.

`load` builds the array_record files once (offline, download=False semantics; a file lock makes concurrent
processes wait for one builder) and returns a random-access source read with `as_data_source`.
"""

import fcntl
import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from jaxdl.data import (
    asterisk,
    canvas,
    digits,
    fashion_mnist,
    fashion_mnist_val,
    fmnist_captions,
    fortune_topics,
    hironsan,
    mnist1d,
    movielens,
    text_corpora,
    translation,
)
from jaxdl.data.memory import read
from jaxdl.data.unit_images import preprocess as unit_preprocess

# name: (builder class, builder config or None, preprocess)
DATASETS: dict[str, tuple[type, str | None, Callable[[dict], dict]]] = {
    "mnist1d": (mnist1d.Mnist1d, "default", mnist1d.preprocess),
    "mnist1d_shuffled": (mnist1d.Mnist1d, "shuffled", mnist1d.preprocess),
    "mnist1d_shuffled_paper": (mnist1d.Mnist1d, "default", mnist1d.paper_shuffled_preprocess),
    "fashion_mnist": (fashion_mnist.FashionMnist, None, fashion_mnist.preprocess),
    "fashion_mnist_rotation": (fashion_mnist.FashionMnist, None, fashion_mnist.rotation_preprocess),
    "fashion_mnist_14": (fashion_mnist.FashionMnist, None, fashion_mnist.half_preprocess),
    "fashion_mnist_unit": (fashion_mnist.FashionMnist, None, unit_preprocess),  # [0, 1]: generative models
    "fashion_mnist_val": (fashion_mnist_val.FashionMnistVal, None, fashion_mnist.preprocess),  # 55k/5k/10k
    "digits": (digits.Digits, None, digits.preprocess),
    "digits_unit": (digits.Digits, None, unit_preprocess),  # [0, 1]: generative-model tests
    "fmnist_captions": (fmnist_captions.FmnistCaptions, None, fmnist_captions.preprocess),
    "pydoc_bytes128": (text_corpora.PydocBytes, "bytes128", text_corpora.preprocess),
    "pydoc_bytes256": (text_corpora.PydocBytes, "bytes256", text_corpora.preprocess),
    "fortunes_bytes128": (text_corpora.FortunesBytes, "bytes128", text_corpora.preprocess),
    "fortunes_bytes256": (text_corpora.FortunesBytes, "bytes256", text_corpora.preprocess),
    "numbers_words2digits": (translation.NumberTranslation, "words2digits", translation.preprocess),
    "numbers_digits2words": (translation.NumberTranslation, "digits2words", translation.preprocess),
    "fortune_topics": (fortune_topics.FortuneTopics, None, fortune_topics.preprocess),
    "fortunes_wordpiece": (fortune_topics.FortunesWordpiece, None, fortune_topics.preprocess),
    **{f"hironsan_ner_fold{k}": (hironsan.HironsanNer, f"fold{k}", hironsan.preprocess) for k in range(hironsan.FOLDS)},
    **{f"movielens_u{k}": (movielens.MovielensRatings, f"u{k}", movielens.rating_preprocess) for k in range(1, 6)},
    "movielens_loo": (movielens.MovielensLoo, None, movielens.ranking_preprocess),
    "asterisk_speech": (asterisk.AsteriskSpeech, None, asterisk.preprocess),
    "canvas": (canvas.Canvas, None, canvas.preprocess),
    "canvas_seg": (canvas.Canvas, None, canvas.seg_preprocess),
}


# Datasets whose preprocess defines its own labels (a pretext task): their number of classes.
NUM_CLASSES = {"fashion_mnist_rotation": 4}
# Datasets whose preprocess changes the input shape.
INPUT_SHAPES = {"fashion_mnist_14": (14, 14, 1)}


def default_data_dir() -> str:
    return os.environ.get("JAXDL_DATA_DIR") or os.path.expanduser("~/.cache/jaxdl/tensorflow_datasets")


def _entry(name: str):
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r} is unknown (config.data.name); known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def builder(name: str, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """The prepared builder for `name`; builds the array_record files on first use."""
    cls, config, _ = _entry(name)
    data_dir = data_dir or default_data_dir()
    kwargs = {"config": config} if config else {}
    b = cls(data_dir=data_dir, file_format="array_record", **kwargs)
    if not b.is_prepared():
        os.makedirs(data_dir, exist_ok=True)
        with open(os.path.join(data_dir, f".{name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it: wait, then reuse
            b = cls(data_dir=data_dir, file_format="array_record", **kwargs)
            if not b.is_prepared():
                b.download_and_prepare(
                    download_config=tfds.download.DownloadConfig(
                        download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
                    )
                )
    return b


def load(name: str, split: str, data_dir: str | None = None):
    """A random-access source of raw examples: `len(src)`, `src[i]`, `src.__getitems__(indices)`."""
    b = builder(name, data_dir)
    if split not in b.info.splits:
        raise ValueError(f"dataset {name!r} has no split {split!r}; splits: {sorted(b.info.splits)}")
    return b.as_data_source(split=split)


def preprocess(name: str, examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stacked raw examples -> {"input": float32 [batch, ...], "label": int32 [batch]}."""
    return _entry(name)[2](examples)


def info(name: str, data_dir: str | None = None) -> dict[str, Any]:
    """num_classes, input_shape (of the preprocessed "input", without batch) and split sizes."""
    b = builder(name, data_dir)
    features = b.info.features
    x_key, y_key = b.info.supervised_keys
    return {
        "label_key": y_key,
        "num_classes": NUM_CLASSES.get(name, features[y_key].num_classes),
        "input_shape": INPUT_SHAPES.get(name, tuple(features[x_key].shape)),
        "splits": {s: b.info.splits[s].num_examples for s in b.info.splits},
    }


def label_counts(name: str, split: str = "train", data_dir: str | None = None) -> np.ndarray:
    """int64 [num_classes]: how often each class id occurs among the preprocessed labels of `split` (every label
    of every example, labels < 0 ignored). For token datasets these are the token counts that unigram proposals
    and Huffman trees are built from. One pass over the split, cached per (name, split, data_dir); read-only."""
    return _label_counts(name, split, data_dir or default_data_dir())


@functools.lru_cache(maxsize=16)
def _label_counts(name: str, split: str, data_dir: str) -> np.ndarray:
    source, num_classes = load(name, split, data_dir), info(name, data_dir)["num_classes"]
    counts = np.zeros(num_classes, np.int64)
    for start in range(0, len(source), 1024):
        labels = preprocess(name, read(source, range(start, min(start + 1024, len(source)))))["label"]
        labels = np.asarray(labels).ravel()
        labels = labels[labels >= 0]
        if labels.size and labels.max() >= num_classes:
            raise ValueError(f"dataset {name!r} split {split!r} has label {labels.max()} >= num_classes={num_classes}")
        counts += np.bincount(labels, minlength=num_classes)
    counts.flags.writeable = False
    return counts
