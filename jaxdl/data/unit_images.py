"""Image datasets scaled to [0, 1] for generative models (pixel / 255, no mean/std normalization), so a Bernoulli
decoder, a sigmoid generator and a diffusion model's [-1, 1] map all read the same range.

`fashion_mnist_unit`: Fashion-MNIST (`jaxdl.data.fashion_mnist`, Debian `dataset-fashion-mnist`) as
{"input": float32 [batch, 28, 28, 1] in [0, 1], "label": int32 [batch]}; `digits_unit`: sklearn's digits
(`jaxdl.data.digits`, 28x28 upsampled, 1,797 images) the same way, small enough for tests.
"""

import numpy as np


def preprocess(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stacked raw examples (`image` uint8 [batch, H, W, C]) -> {"input": float32 in [0, 1], "label": int32}."""
    return {"input": examples["image"].astype(np.float32) / 255.0, "label": examples["label"].astype(np.int32)}
