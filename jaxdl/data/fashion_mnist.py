"""Fashion-MNIST (Xiao et al. 2017) as a TFDS array_record builder, from the idx files of Debian's
`dataset-fashion-mnist` package (/usr/share/datasets/fashion-mnist, or $JAXDL_FASHION_MNIST_DIR).

Examples: `image` uint8 [28, 28, 1], `label` int in [0, 10). Splits: train 60000, test 10000.
"""

import gzip
import os
import zlib

import numpy as np
import tensorflow_datasets as tfds

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MEAN, STD = 0.2860, 0.3530  # of the train images scaled to [0, 1]


def raw_dir() -> str:
    """The folder with the four idx files; FileNotFoundError saying how to get them if they are missing."""
    folder = os.environ.get("JAXDL_FASHION_MNIST_DIR", DEFAULT_DIR)
    missing = [f for pair in FILES.values() for f in pair if not os.path.exists(os.path.join(folder, f))]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST idx files {missing} not found in {folder}. Install them with "
            "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or set JAXDL_FASHION_MNIST_DIR to a folder "
            "holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
            "t10k-labels-idx1-ubyte.gz."
        )
    return folder


def read_idx(path: str) -> np.ndarray:
    """An idx file (gzip) as a uint8 array: magic 0x00000803 images [n, rows, cols], 0x00000801 labels [n]."""
    with gzip.open(path, "rb") as f:
        buf = f.read()
    magic = int.from_bytes(buf[:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3):
        raise ValueError(f"{path}: not a uint8 idx file (magic {magic:#010x})")
    dims = [int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(buf, np.uint8, offset=4 + 4 * ndim)
    if data.size != np.prod(dims):
        raise ValueError(f"{path}: truncated idx file ({data.size} values for shape {dims})")
    return data.reshape(dims)


def image_info(builder, description: str, homepage: str, shape=(28, 28, 1), num_classes: int = 10):
    """DatasetInfo of an image-classification builder: `image` uint8 `shape`, `label` ClassLabel."""
    return tfds.core.DatasetInfo(
        builder=builder,
        description=description,
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=shape, dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=num_classes),
            }
        ),
        supervised_keys=("image", "label"),
        homepage=homepage,
    )


class FashionMnist(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return image_info(self, __doc__, "https://github.com/zalandoresearch/fashion-mnist")

    def _split_generators(self, dl_manager):
        del dl_manager
        folder = raw_dir()
        return {split: self._generate_examples(folder, *names) for split, names in FILES.items()}

    def _generate_examples(self, folder, images_file, labels_file, start: int = 0, stop: int | None = None):
        """Examples `start:stop` of one idx image/label file pair, keyed 0, 1, ... from `start`."""
        images = read_idx(os.path.join(folder, images_file))[start:stop]
        labels = read_idx(os.path.join(folder, labels_file))[start:stop]
        for i in range(len(images)):
            yield i, {"image": images[i][..., None], "label": int(labels[i])}


def preprocess(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stacked raw examples -> {"input": float32 [batch, 28, 28, 1] normalized, "label": int32 [batch]}."""
    x = (examples["image"].astype(np.float32) / 255.0 - MEAN) / STD
    return {"input": x, "label": examples["label"].astype(np.int32)}


def rotation_preprocess(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The rotation-prediction pretext task (Gidaris et al. 2018): each image rotated by k·90°, label k in [0, 4).

    k is a hash (crc32) of the image's bytes, so it is fixed per image, the same on every read and in every split,
    and uniform over the dataset; the class labels are not used."""
    images = examples["image"]
    k = np.array([zlib.crc32(im.tobytes()) % 4 for im in images], np.int32)
    rotated = np.stack([np.rot90(im, int(r), axes=(0, 1)) for im, r in zip(images, k, strict=True)])
    return {"input": preprocess(dict(examples, image=rotated))["input"], "label": k}


def half_preprocess(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Fashion-MNIST at 14x14 (2x2 average pooling of the normalized images): a 4x cheaper variant for CPU
    studies that need deep networks."""
    x = preprocess(examples)
    b = x["input"].shape[0]
    x["input"] = x["input"].reshape(b, 14, 2, 14, 2, 1).mean(axis=(2, 4))
    return x
