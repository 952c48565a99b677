"""Fashion-MNIST with a held-out validation split, for choosing hyperparameters without touching the test set.

Same idx files and preprocessing as `jaxdl.data.fashion_mnist`. Splits: train = the first 55,000 images of the
official train file, validation = its last 5,000 (the file is not sorted by class: 450–527 images per class), test = the
official 10,000 test images. A separate builder (not a slice of `fashion_mnist`) because the input pipeline reads
whole named splits.
"""

import tensorflow_datasets as tfds

from jaxdl.data.fashion_mnist import FILES, FashionMnist, image_info, raw_dir

TRAIN_SIZE = 55_000  # of the 60,000 official train images; the rest is the validation split


class FashionMnistVal(FashionMnist):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return image_info(self, __doc__, "https://github.com/zalandoresearch/fashion-mnist")

    def _split_generators(self, dl_manager):
        del dl_manager
        folder = raw_dir()
        return {
            "train": self._generate_examples(folder, *FILES["train"], 0, TRAIN_SIZE),
            "validation": self._generate_examples(folder, *FILES["train"], TRAIN_SIZE, None),
            "test": self._generate_examples(folder, *FILES["test"], 0, None),
        }
