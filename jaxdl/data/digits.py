"""sklearn's handwritten digits (UCI optdigits test set, 1,797 8x8 images bundled with scikit-learn, offline),
upsampled to 28x28 so Fashion-MNIST models take them unchanged: the small target set of the transfer study.

Examples: `image` uint8 [28, 28, 1] (the 0-16 gray levels, bilinearly upsampled and scaled to 0-255), `label` in
[0, 10). Splits (a fixed seeded shuffle): train 1,297, test 500.
"""

import numpy as np
import tensorflow_datasets as tfds

from jaxdl.data.fashion_mnist import image_info

TEST_SIZE = 500
MEAN, STD = 0.3052, 0.3249  # of the upsampled train images scaled to [0, 1]


def images_and_labels() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 examples as (uint8 [n, 28, 28], int [n]) in sklearn's order."""
    from scipy import ndimage
    from sklearn.datasets import load_digits

    d = load_digits()
    up = np.stack([ndimage.zoom(im / 16.0, 28 / 8, order=1, grid_mode=True, mode="nearest") for im in d.images])
    return np.clip(np.round(up * 255), 0, 255).astype(np.uint8), d.target


class Digits(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return image_info(self, __doc__, "https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset")

    def _split_generators(self, dl_manager):
        del dl_manager
        images, labels = images_and_labels()
        order = np.random.default_rng(0).permutation(len(labels))
        parts = {"test": order[:TEST_SIZE], "train": order[TEST_SIZE:]}
        return {split: self._generate_examples(images, labels, idx) for split, idx in parts.items()}

    def _generate_examples(self, images, labels, indices):
        for i in indices:
            yield int(i), {"image": images[i][..., None], "label": int(labels[i])}


def preprocess(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    x = (examples["image"].astype(np.float32) / 255.0 - MEAN) / STD
    return {"input": x, "label": examples["label"].astype(np.int32)}
