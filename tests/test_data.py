"""Datasets and the input pipeline: real MNIST-1D / Fashion-MNIST, determinism, sharding, resumption."""

import jax
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec
from offline_data import require_fashion_mnist

from jaxdl import data
from jaxdl.data import fashion_mnist, mnist1d


@pytest.fixture(scope="module")
def train_src(data_dir):
    return data.load("mnist1d", "train", data_dir)


def test_mnist1d_matches_the_package(data_dir, train_src):
    from mnist1d.data import get_dataset_args, make_dataset

    ref = make_dataset(get_dataset_args())
    test_src = data.load("mnist1d", "test", data_dir)
    assert (len(train_src), len(test_src)) == (4000, 1000)
    info = data.info("mnist1d", data_dir)
    assert info["num_classes"] == 10 and info["input_shape"] == (40,)
    # same rows as the package (TFDS stores them in its own deterministic order)
    rows = data.preprocess("mnist1d", data.memory.read(test_src, np.arange(1000)))
    assert rows["input"].dtype == np.float32 and rows["label"].dtype == np.int32
    ours = sorted(map(tuple, np.round(np.c_[rows["input"], rows["label"]], 5)))
    theirs = sorted(map(tuple, np.round(np.c_[ref["x_test"].astype(np.float32), ref["y_test"]], 5)))
    np.testing.assert_allclose(np.array(ours), np.array(theirs), atol=1e-5)


def test_shuffled_variant_is_a_fixed_column_permutation(data_dir):
    a = data.memory.read(data.load("mnist1d", "test", data_dir), np.arange(1000))
    b = data.memory.read(data.load("mnist1d_shuffled", "test", data_dir), np.arange(1000))
    # pair rows by (label, multiset of values): a column permutation keeps both
    key = lambda x, y: tuple(np.round(np.sort(x), 4)) + (int(y),)
    by_key = {key(x, y): x for x, y in zip(a["x"], a["label"], strict=True)}
    perm = np.random.default_rng(mnist1d.SHUFFLE_SEED).permutation(40)
    assert not np.array_equal(perm, np.arange(40))
    for x, y in zip(b["x"], b["label"], strict=True):
        np.testing.assert_array_equal(x, by_key[key(x, y)][perm])


def test_fashion_mnist(data_dir):
    require_fashion_mnist()
    info = data.info("fashion_mnist", data_dir)
    assert info["splits"] == {"train": 60000, "test": 10000}
    assert info["num_classes"] == 10 and info["input_shape"] == (28, 28, 1)
    src = data.load("fashion_mnist", "test", data_dir)
    raw = src[0]
    assert raw["image"].shape == (28, 28, 1) and raw["image"].dtype == np.uint8
    batch = data.preprocess("fashion_mnist", data.memory.read(src, np.arange(64)))
    assert batch["input"].dtype == np.float32 and -1 < batch["input"].mean() < 1


def test_fashion_missing_files_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXDL_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion_mnist", "train", str(tmp_path / "tfds"))


def test_idx_reader_rejects_truncated_files(tmp_path):
    import gzip

    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as f:
        f.write((0x00000803).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (2, 3, 3)) + bytes(10))
    with pytest.raises(ValueError, match="truncated"):
        fashion_mnist.read_idx(str(path))


def test_loader_is_deterministic_and_covers_each_example_once_per_epoch(train_src):
    a = data.TrainLoader(train_src, dataset="mnist1d", global_batch_size=100, seed=3)
    b = data.TrainLoader(train_src, dataset="mnist1d", global_batch_size=100, seed=3)
    c = data.TrainLoader(train_src, dataset="mnist1d", global_batch_size=100, seed=4)
    for step in (0, 7, 40, 85):
        np.testing.assert_array_equal(a.host_batch(step)["input"], b.host_batch(step)["input"])
    assert not np.array_equal(a.host_batch(0)["input"], c.host_batch(0)["input"])
    epoch0 = np.concatenate([a.global_indices(s) for s in range(a.steps_per_epoch)])
    epoch1 = np.concatenate([a.global_indices(s) for s in range(a.steps_per_epoch, 2 * a.steps_per_epoch)])
    assert sorted(epoch0) == list(range(4000)) and sorted(epoch1) == list(range(4000))
    assert not np.array_equal(epoch0, epoch1)


def test_host_slices_concatenate_to_the_global_batch(train_src):
    full = data.TrainLoader(
        train_src, dataset="mnist1d", global_batch_size=64, seed=0, process_index=0, process_count=1
    )
    parts = [
        data.TrainLoader(train_src, dataset="mnist1d", global_batch_size=64, seed=0, process_index=i, process_count=4)
        for i in range(4)
    ]
    for step in (0, 13):
        joined = np.concatenate([p.host_batch(step)["input"] for p in parts])
        np.testing.assert_array_equal(joined, full.host_batch(step)["input"])


def test_iterate_resumes_the_stream_and_shards_over_data(train_src):
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    loader = data.TrainLoader(train_src, dataset="mnist1d", global_batch_size=64, seed=0, sharding=sharding)
    stream = loader.iterate(start_step=37)
    for step in range(37, 41):
        batch = next(stream)
        assert batch["input"].sharding == sharding and batch["input"].shape == (64, 40)
        np.testing.assert_array_equal(np.asarray(batch["input"]), loader.host_batch(step)["input"])
    loader.close()


def test_eval_batches_cover_each_example_once_with_mask(data_dir):
    src = data.load("mnist1d", "test", data_dir)
    batches = list(data.eval_batches(src, dataset="mnist1d", batch_size=384))
    assert len(batches) == 3 and all(b["input"].shape == (384, 40) for b in batches)
    mask = np.concatenate([np.asarray(b["mask"]) for b in batches])
    assert mask.sum() == 1000 and mask[:1000].all() and not mask[1000:].any()
    labels = np.concatenate([np.asarray(b["label"]) for b in batches])[:1000]
    np.testing.assert_array_equal(labels, data.memory.read(src, np.arange(1000))["label"])


def test_errors_name_the_bad_thing(train_src, data_dir):
    with pytest.raises(ValueError, match="dataset 'mnist2d' is unknown"):
        data.load("mnist2d", "train", data_dir)
    with pytest.raises(ValueError, match="no split 'validation'"):
        data.load("mnist1d", "validation", data_dir)
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        data.TrainLoader(train_src, dataset="mnist1d", global_batch_size=64, seed=0, process_count=3, process_index=0)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    with pytest.raises(ValueError, match="batch_size=100 is not divisible by the 8 batch shards"):
        data.TrainLoader(
            train_src,
            dataset="mnist1d",
            global_batch_size=100,
            seed=0,
            sharding=NamedSharding(mesh, PartitionSpec("data")),
        )


def test_pipeline_errors_reach_the_consumer(train_src, monkeypatch):
    loader = data.TrainLoader(train_src, dataset="mnist1d", global_batch_size=64, seed=0)

    def broken(step):
        raise OSError("disk gone")

    monkeypatch.setattr(loader, "host_batch", broken)
    with pytest.raises(RuntimeError, match="input pipeline for 'mnist1d' failed"):
        next(loader.iterate(0))
    loader.close()
