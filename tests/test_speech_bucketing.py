"""Length buckets (jaxdl.data.buckets through jaxdl.data.pipeline.TrainLoader) on a synthetic in-memory copy of
the `asterisk_speech` layout (its real preprocess; no Debian files needed): every example appears exactly once
per epoch, each batch is padded to a bucket that holds all its utterances, the stream is a pure function of
(seed, step), and an utterance's CTC loss is the same whichever bucket it is padded to."""

import jax
import numpy as np
import pytest
from flax import nnx

from jaxdl.data import asterisk, buckets
from jaxdl.data.memory import InMemorySource
from jaxdl.data.pipeline import TrainLoader
from jaxdl.models.speech.conformer import Model
from jaxdl.tasks.ctc import Task

BUCKETS = (16000, 28000, 40000)  # 2 / 3.5 / 5 s at 8 kHz


def _source(n=45, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2000, asterisk.MAX_SAMPLES + 1, n).astype(np.int32)
    lengths[:3] = (16000, 16001, 40000)  # bucket edges
    audio = np.zeros((n, asterisk.MAX_SAMPLES), np.int16)
    for i, m in enumerate(lengths):
        audio[i, :m] = rng.integers(-3000, 3000, m)
    label = np.full((n, asterisk.MAX_LABEL), -1, np.int64)
    label[:, :4] = rng.integers(1, len(asterisk.VOCAB) + 1, (n, 4))
    arrays = dict(
        audio=audio,
        num_samples=lengths,
        label=label,
        label_length=np.full(n, 4, np.int32),
        index=np.arange(n, dtype=np.int32),
    )
    return InMemorySource(arrays), lengths


def _loader(source, seed=0, batch=8):
    return TrainLoader(source, dataset="asterisk_speech", global_batch_size=batch, seed=seed, buckets=BUCKETS)


def test_every_example_once_per_epoch_in_a_bucket_that_holds_it():
    source, lengths = _source()
    loader = _loader(source)
    assert loader.steps_per_epoch == 6  # ceil(45 / 8)
    for epoch in range(2):
        seen, widths = [], set()
        for step in range(epoch * 6, epoch * 6 + 6):
            b = loader.host_batch(step)
            rows = loader.global_indices(step)
            real = rows >= 0
            np.testing.assert_array_equal(b["mask"], real.astype(np.float32))
            width = b["input"].shape[1]
            assert width in BUCKETS
            widths.add(width)
            np.testing.assert_array_equal(b["input_length"][real], lengths[rows[real]])
            assert (b["input_length"][real] <= width).all()
            # padding never exceeds the bucket: no example is in a bucket larger than needed unless carried up
            smallest = np.array([min(x for x in BUCKETS if x >= m) for m in lengths[rows[real]]])
            assert (smallest <= width).all()
            seen += list(rows[real])
        assert sorted(seen) == list(range(45)), epoch
        assert widths == set(BUCKETS)
    # 2 s utterances mostly land in 2 s batches: the padded compute is below padding everything to 5 s
    cost = sum(loader.host_batch(s)["input"].shape[1] for s in range(6))
    assert cost < 6 * BUCKETS[-1]


def test_the_stream_is_a_pure_function_of_seed_and_step():
    source, _ = _source()
    a, b, c = _loader(source), _loader(source), _loader(source, seed=1)
    for step in (13, 2, 7, 13):  # any order, across epochs: nothing depends on what was read before
        x, y = a.host_batch(step), b.host_batch(step)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert any(not np.array_equal(a.global_indices(s), c.global_indices(s)) for s in range(6))


def test_bad_buckets_name_the_config_key():
    source, _ = _source()
    for bad, match in (
        ((28000, 16000, 40000), "strictly increasing"),
        ((16000, 48000), "exceeds the stored input length 40000"),
        ((16000, 28000), "example 2 has length 40000 > the largest bucket 28000"),
    ):
        with pytest.raises(ValueError, match=match):
            TrainLoader(source, dataset="asterisk_speech", global_batch_size=8, seed=0, buckets=bad)
    with pytest.raises(ValueError, match="order='shuffle'"):
        TrainLoader(source, dataset="asterisk_speech", global_batch_size=8, seed=0, buckets=BUCKETS, order="sequential")


def test_ctc_loss_of_an_utterance_is_the_same_in_any_bucket():
    source, _ = _source(n=8, seed=3)
    rows = np.array([0, 3])  # 2.0 s and a shorter one
    with nnx.use_eager_sharding(False):
        model = Model(
            input_shape=(16000,),
            num_classes=len(asterisk.VOCAB) + 1,
            channels=4,
            dim=16,
            heads=2,
            blocks=1,
            ff_mult=2,
            kernel=5,
            dropout=0.0,
            specaugment=False,
            rngs=nnx.Rngs(0),
        )
    graphdef, state = nnx.split(model)
    task = Task()
    raw = source.take(rows)
    assert raw["num_samples"].max() <= BUCKETS[0]

    @jax.jit
    def per_utterance(batch):
        m = nnx.merge(graphdef, state)
        return task.loss(m, batch, nnx.Rngs(dropout=0))[1]["sum_loss"]

    losses = []
    for width in BUCKETS:
        batch = asterisk.preprocess(raw)
        batch["input"] = batch["input"][:, :width]
        losses.append([float(per_utterance({k: v[i : i + 1] for k, v in batch.items()})) for i in range(2)])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    np.testing.assert_allclose(losses[2], losses[0], rtol=1e-5)
    assert losses[0][0] != pytest.approx(losses[0][1])  # the two utterances differ: the loss reads the audio


def test_epoch_plan_counts_do_not_depend_on_the_seed():
    lengths = np.random.default_rng(0).integers(1, 100, 101)
    for seed in range(3):
        rows, sizes = buckets.epoch_plan(lengths, (30, 60, 100), 10, seed, 0)
        assert rows.shape == (11, 10) and (rows == -1).sum() == 9
        assert sorted(rows[rows >= 0]) == list(range(101))
        assert (lengths[np.maximum(rows, 0)] <= sizes[:, None]).all()
