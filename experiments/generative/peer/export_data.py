"""Writes Fashion-MNIST as the generative study's VAE sees it to one .npz for the peer (flax `examples/vae`), run
with jaxdl's venv:

    .venv/bin/python experiments/generative/peer/export_data.py --out=/tmp/peer_generative_data.npz

`train`: float32 [60000, 784] in [0, 1] (`fashion_mnist_unit`, dynamically binarized by the peer's driver as our
`vae` task does each step); `test_binary`: float32 [10000, 784] in {0, 1}, the test set binarized exactly as our
`elbo` evaluator does (batches of 200, x ~ Bernoulli(pixel) with key fold_in(fold_in(key(0), batch), 0)), so both
models' test -ELBO are on the same binary images.
"""

import argparse

import jax
import numpy as np

from jaxdl import data


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    a = p.parse_args()
    arrays = {}
    for split in ("train", "test"):
        src = data.load("fashion_mnist_unit", split)
        arrays[split] = data.preprocess("fashion_mnist_unit", data.memory.read(src, range(len(src))))["input"]
    key = jax.random.key(0)
    test = arrays["test"]
    binary = [
        np.asarray(jax.random.bernoulli(jax.random.fold_in(jax.random.fold_in(key, i), 0), test[s : s + 200]))
        for i, s in enumerate(range(0, len(test), 200))
    ]
    np.savez_compressed(
        a.out,
        train=arrays["train"].reshape(len(arrays["train"]), -1).astype(np.float32),
        test_binary=np.concatenate(binary).reshape(len(test), -1).astype(np.float32),
    )
    print({k: v.shape for k, v in arrays.items()})


if __name__ == "__main__":
    main()
