"""MNIST-1D (Greydanus 2020) as a TFDS array_record builder, generated offline by the `mnist1d` package.

Examples: `x` float32 [40], `label` int in [0, 10). Splits: train 4000, test 1000 (the package's own split).
Configs: `default` and `shuffled` (the paper's shuffled-sequence variant: one fixed permutation of the 40
time steps, applied to train and test alike, destroys the spatial structure). The registry's
`mnist1d_shuffled_paper` is the default config with the authors' permutation applied at preprocessing
(`paper_shuffled_preprocess`); how much a CNN loses depends on the permutation (experiments/mnist1d/README.md).
"""

import numpy as np
import tensorflow_datasets as tfds

SHUFFLE_SEED = 0  # the permutation of the `shuffled` config
# The authors' permutation (greydanus/mnist1d notebooks/mnist1d-classification.ipynb: np.random.seed(42);
# np.random.permutation(40)); RandomState(42) draws the same legacy MT19937 stream.
PAPER_PERMUTATION = np.random.RandomState(42).permutation(40)


class Mnist1d(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="default", description="MNIST-1D, the package's default arguments."),
        tfds.core.BuilderConfig(name="shuffled", description="Time steps permuted by one fixed permutation."),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "x": tfds.features.Tensor(shape=(40,), dtype=np.float32),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("x", "label"),
            homepage="https://github.com/greydanus/mnist1d",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # generated offline; nothing to download
        from mnist1d.data import get_dataset_args, make_dataset  # not get_dataset: it downloads

        d = make_dataset(get_dataset_args())
        x, x_test = d["x"].astype(np.float32), d["x_test"].astype(np.float32)
        if self.builder_config.name == "shuffled":
            perm = np.random.default_rng(SHUFFLE_SEED).permutation(x.shape[1])
            x, x_test = x[:, perm], x_test[:, perm]
        return {
            "train": self._generate_examples(x, d["y"]),
            "test": self._generate_examples(x_test, d["y_test"]),
        }

    def _generate_examples(self, x, y):
        for i in range(len(x)):
            yield i, {"x": x[i], "label": int(y[i])}


def preprocess(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stacked raw examples -> {"input": float32 [batch, 40], "label": int32 [batch]}."""
    return {"input": examples["x"].astype(np.float32), "label": examples["label"].astype(np.int32)}


def paper_shuffled_preprocess(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`preprocess`, then the time steps in the authors' shuffled order: input[:, t] = x[:, PAPER_PERMUTATION[t]]."""
    out = preprocess(examples)
    out["input"] = out["input"][:, PAPER_PERMUTATION]
    return out
