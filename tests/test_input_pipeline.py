"""The input pipeline's two paths (jaxdl.data.memory): a split decoded once into memory and a split streamed from its
array_record files give the same batches for the same (seed, step); the memory budget decides which; bad budgets
and corrupt shards get clear errors; the trainer logs its goodput metrics."""

import glob
import json
import os
import shutil

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from jaxdl import config as config_lib
from jaxdl import data
from jaxdl.data.memory import InMemorySource
from jaxdl.metrics import TIMING_METRICS


@pytest.fixture(scope="module")
def train_src(data_dir):
    return data.load("mnist1d", "train", data_dir)


def _equal(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


def test_in_memory_holds_the_decoded_split(train_src):
    mem = data.memory.cache(train_src, mode="memory", budget_mb=64)
    assert isinstance(mem, InMemorySource) and len(mem) == len(train_src) == 4000
    assert mem.nbytes == 4000 * (40 * 4 + 8)  # float32 [40] + int64 label per example
    for i in (0, 1023, 1024, 3999):  # chunk edges
        _equal({k: np.asarray(v) for k, v in train_src[i].items()}, mem[i])
    with pytest.raises(ValueError, match="read-only"):
        mem.arrays["x"][0, 0] = 1.0


@pytest.mark.parametrize("order", ["shuffle", "sequential"])
def test_memory_and_stream_give_the_same_batches(train_src, order):
    """Host batches across an epoch boundary, with augmentation (mixup draws per step), and the device batches
    of both producers (Grain worker threads, and inline)."""
    aug = data.augment.make_augment(dict(data.augment.DEFAULTS, mixup_alpha=0.4))
    mem = data.memory.cache(train_src, mode="memory", budget_mb=64)
    kw = dict(dataset="mnist1d", global_batch_size=512, seed=5, order=order)
    disk, memory = data.TrainLoader(train_src, **kw), data.TrainLoader(mem, augment=None, **kw)
    disk_aug, mem_aug = data.TrainLoader(train_src, augment=aug, **kw), data.TrainLoader(mem, augment=aug, **kw)
    for step in (0, 6, 7, 8, 15):  # 7 steps per epoch
        _equal(disk.host_batch(step), memory.host_batch(step))
        _equal(disk_aug.host_batch(step), mem_aug.host_batch(step))
    threaded = data.TrainLoader(mem, workers=2, **kw)
    inline = data.TrainLoader(train_src, workers=0, **kw)
    a, b = threaded.iterate(6), inline.iterate(6)
    for step in range(6, 10):
        batch_a, batch_b = next(a), next(b)
        _equal(batch_a, batch_b)
        _equal(batch_a, disk.host_batch(step))
    threaded.close()


def test_memory_and_stream_shard_alike(train_src):
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    mem = data.memory.cache(train_src, mode="memory", budget_mb=64)
    loaders = [data.TrainLoader(s, dataset="mnist1d", global_batch_size=64, seed=1, sharding=sharding) for s in (train_src, mem)]  # fmt: skip
    assert [ld.workers for ld in loaders] == [data.pipeline.STREAM_WORKERS, 0]  # workers=-1: threads for disk only
    streamed, inline = (next(ld.iterate(3)) for ld in loaders)
    assert streamed["input"].sharding == loaders[1].device_batch(3)["input"].sharding == sharding
    assert isinstance(inline["input"], np.ndarray)  # one process, inline: the jitted step transfers host arrays
    _equal(streamed, inline)
    for ld in loaders:
        ld.close()


def test_the_budget_decides_and_is_respected(train_src):
    """4000 × 168 bytes = 0.64 MB decoded: under a 1 MB budget it is held, over 0.5 MB it streams ("auto") or is
    refused ("memory"), naming the size and the budget; "stream" never holds it."""
    assert isinstance(data.memory.cache(train_src, mode="auto", budget_mb=1), InMemorySource)
    assert data.memory.cache(train_src, mode="auto", budget_mb=0.5) is train_src
    assert data.memory.cache(train_src, mode="stream", budget_mb=1e6) is train_src
    with pytest.raises(ValueError, match=r"4000 examples need 0\.6 MB decoded, over config.data.memory_budget_mb=0\.5"):
        data.memory.cache(train_src, mode="memory", budget_mb=0.5)


def test_bad_cache_settings_name_the_key(train_src):
    for budget in (0, -1):
        with pytest.raises(ValueError, match="config.data.memory_budget_mb must be > 0"):
            data.memory.cache(train_src, budget_mb=budget)
    with pytest.raises(ValueError, match="config.data.cache='disk' is not one of"):
        data.memory.cache(train_src, mode="disk")
    c = config_lib.base()
    c.data.name, c.model = "mnist1d", ml_collections.ConfigDict({"name": "mlp"})
    for key, value, message in [
        ("memory_budget_mb", 0.0, "config.data.memory_budget_mb must be > 0"),
        ("cache", "ram", "config.data.cache='ram' is not one of"),
        ("workers", -2, "config.data.workers must be >= -1"),
    ]:
        bad = c.copy_and_resolve_references()
        bad.data[key] = value
        with pytest.raises(ValueError, match=message):
            config_lib.validate(bad)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_corrupt_shard_is_named(data_dir, tmp_path, damage):
    data.load("mnist1d", "test", data_dir)  # prepared
    shutil.copytree(os.path.join(data_dir, "mnist1d"), tmp_path / "mnist1d")
    (shard,) = glob.glob(str(tmp_path / "mnist1d/default/*/mnist1d-test.array_record-*"))
    raw = bytearray(open(shard, "rb").read())
    if damage == "flip":
        for i in range(1000, len(raw) - 1000, 997):
            raw[i] ^= 0xFF
    else:
        raw = raw[: len(raw) // 2]
    with open(shard, "wb") as f:
        f.write(bytes(raw))
    src = data.load("mnist1d", "test", str(tmp_path))
    what = "dataset 'mnist1d' split 'test'"
    with pytest.raises(OSError, match=f"{what}: could not read examples .* array_record files in {tmp_path}"):
        data.memory.cache(src, mode="auto", budget_mb=64, what=what)
    with pytest.raises(OSError, match="could not read examples"):  # the streaming path reads a batch the same way
        data.memory.read(src, np.arange(1000), what=what)


def _run(workdir, data_dir, **data_overrides):
    c = config_lib.base()
    c.data.name, c.data.data_dir, c.data.batch_size, c.data.eval_batch_size = "mnist1d", data_dir, 64, 500
    c.data.update(data_overrides)
    c.model = ml_collections.ConfigDict({"name": "mlp", "hidden": (32,)})
    c.optim.name, c.optim.lr = "adam", 1e-2
    c.train.steps, c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 40, 10, 20, 0
    c.train.progress = False
    from jaxdl.train import train_and_evaluate

    final = train_and_evaluate(c, str(workdir), devices=jax.devices()[:1])
    with open(workdir / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    return final, records


def test_trainer_runs_alike_from_memory_and_from_disk(tmp_path, data_dir):
    """Same seed: the same metrics bitwise, in memory (inline production) and streamed (two Grain threads); every
    train log has the goodput metrics, the input-wait fraction a fraction."""
    final_m, rec_m = _run(tmp_path / "m", data_dir, cache="memory", workers=0)
    final_s, rec_s = _run(tmp_path / "s", data_dir, cache="stream", workers=2)
    assert final_m == final_s
    strip = lambda rs: [{k: v for k, v in r.items() if k not in TIMING_METRICS} for r in rs]
    assert strip(rec_m) == strip(rec_s)
    train_logs = [r for r in rec_m + rec_s if "train/loss" in r]
    assert len(train_logs) == 8
    for r in train_logs:
        assert 0 <= r["train/input_wait_fraction"] <= 1 and r["train/steps_per_sec"] > 0
    assert all(r["train/step_ms"] > 0 for r in train_logs if r["step"] > 10)  # timed from the second window
