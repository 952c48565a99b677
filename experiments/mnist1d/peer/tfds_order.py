"""Writes jaxdl's stored order of the MNIST-1D train split as indices into the authors' frozen data (a diagnostic
for run_peer.py --train_order: TFDS stores examples in its own hashed order, so `config.data.order="sequential"`
reads the same 40 fixed batches per epoch as the authors' loop but with other examples in each batch).

Command (jaxdl's .venv): python experiments/mnist1d/peer/tfds_order.py --out=/tmp/tfds_train_order.npy
"""

import argparse

import numpy as np
from mnist1d.data import get_dataset_args, make_dataset

from jaxdl import data

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    a = p.parse_args()
    src = data.load("mnist1d", "train")
    x = data.pipeline._read(src, np.arange(len(src)))["x"]
    ref = make_dataset(get_dataset_args())["x"].astype(np.float32)  # = the frozen pkl's, in float32
    index = {row.tobytes(): i for i, row in enumerate(ref)}
    order = np.array([index[row.tobytes()] for row in x])
    assert sorted(order.tolist()) == list(range(len(ref))), "the stored rows are not a permutation of the package's"
    np.save(a.out, order)
    print(f"{a.out}: first indices {order[:8].tolist()}")
