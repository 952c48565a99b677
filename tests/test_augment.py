"""Augmentation (crop, flip, mixup, CutMix), label-fraction subsets, rotation pretext labels, and init_from."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from baselines import eval_labels, majority_accuracy
from offline_data import require_fashion_mnist

from jaxdl import config as config_lib
from jaxdl import data
from jaxdl.data import augment, subset
from jaxdl.data.fashion_mnist import rotation_preprocess
from jaxdl.finetune import transplant
from jaxdl.losses import batch_loss


def _rng(seed=0):
    return np.random.default_rng(seed)


def _images(b=16, h=8, w=8, c=1, seed=0):
    return _rng(seed).normal(size=(b, h, w, c)).astype(np.float32)


def test_random_crop_is_a_shift_with_zero_fill():
    x = _images()
    y = augment.random_crop(x, 2, _rng(1))
    assert y.shape == x.shape
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    for i in range(len(x)):  # every output is some window of the zero-padded input
        windows = [padded[i, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        assert any(np.array_equal(y[i], wnd) for wnd in windows)
    assert not np.array_equal(y, x)


def test_flip_mirrors_about_half():
    x = _images(b=200)
    y = augment.random_flip(x, _rng(2))
    flipped = [np.array_equal(y[i], x[i, :, ::-1]) for i in range(len(x))]
    kept = [np.array_equal(y[i], x[i]) for i in range(len(x))]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 70 < sum(flipped) < 130


def test_mixup_mixes_inputs_and_labels_with_one_lambda():
    x, y = _images(), np.arange(16, dtype=np.int32)
    out = augment.mixup({"input": x, "label": y}, 0.4, _rng(3))
    lam = out["mix"][0]
    assert np.all(out["mix"] == lam) and 0 <= lam <= 1
    partner = out["label_b"]  # labels are the indices here: they name each example's partner
    np.testing.assert_allclose(out["input"], lam * x + (1 - lam) * x[partner], rtol=1e-6)
    assert sorted(partner) == list(range(16)) and np.array_equal(out["label"], y)


def test_cutmix_lambda_is_the_kept_area():
    x, y = _images(h=16, w=16), np.arange(16, dtype=np.int32)
    for seed in range(5):
        out = augment.cutmix({"input": x, "label": y}, 1.0, _rng(seed))
        partner = out["label_b"]
        from_self = np.isclose(out["input"], x).all(axis=(0, 3))  # pixels nobody else's (partners differ)
        moved = partner != np.arange(16)
        if moved.any():
            pasted = ~from_self
            assert np.isclose(out["mix"][0], 1 - pasted.mean())
            np.testing.assert_array_equal(out["input"][:, pasted], x[partner][:, pasted])


def test_mixed_loss_is_the_lambda_weighted_sum():
    logits = jax.random.normal(jax.random.key(0), (4, 5))
    a, b = jnp.array([0, 1, 2, 3]), jnp.array([4, 3, 2, 1])
    mix = jnp.full((4,), 0.3)
    loss, _ = batch_loss(logits, {"label": a, "label_b": b, "mix": mix})
    la, _ = batch_loss(logits, {"label": a})
    lb, _ = batch_loss(logits, {"label": b})
    np.testing.assert_allclose(loss, 0.3 * la + 0.7 * lb, rtol=1e-6)


def test_sequence_labels_ignore_negatives():
    logits = jax.random.normal(jax.random.key(1), (2, 3, 7))
    labels = jnp.array([[1, -1, 2], [-1, -1, 6]])
    loss, _ = batch_loss(logits, {"label": labels})
    logp = jax.nn.log_softmax(logits)
    want = -(logp[0, 0, 1] + logp[0, 2, 2] + logp[1, 2, 6]) / 3
    np.testing.assert_allclose(loss, want, rtol=1e-6)


def test_augment_config_errors_name_the_key():
    with pytest.raises(ValueError, match="config.data.augment.crop_padding needs image inputs"):
        augment.check_config({"crop_padding": 2}, (40,))
    with pytest.raises(ValueError, match="config.data.augment.mixup_alpha must be >= 0"):
        augment.check_config({"mixup_alpha": -1.0}, (28, 28, 1))
    assert augment.make_augment(augment.DEFAULTS) is None


def test_loader_augmentation_is_a_pure_function_of_the_step(data_dir):
    src = data.load("mnist1d", "train", data_dir)
    aug = augment.make_augment({"mixup_alpha": 0.2})
    make = lambda: data.TrainLoader(src, dataset="mnist1d", global_batch_size=32, seed=3, augment=aug)
    a, b = make().host_batch(7), make().host_batch(7)
    for k in ("input", "label", "label_b", "mix"):
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(make().host_batch(8)["mix"], a["mix"])


def test_stratified_subset_keeps_every_class():
    labels = np.repeat(np.arange(10), [100, 90, 80, 70, 60, 50, 40, 30, 20, 10])
    idx = subset.stratified_indices(labels, 0.1, seed=0)
    counts = np.bincount(labels[idx], minlength=10)
    np.testing.assert_array_equal(counts, [10, 9, 8, 7, 6, 5, 4, 3, 2, 1])
    assert np.array_equal(idx, subset.stratified_indices(labels, 0.1, seed=0))
    assert not np.array_equal(idx, subset.stratified_indices(labels, 0.1, seed=1))
    assert np.bincount(labels[subset.stratified_indices(labels, 0.001, 0)]).min() == 1  # >= 1 per class
    with pytest.raises(ValueError, match="train_fraction"):
        subset.stratified_indices(labels, 0.0, 0)


def test_digits_dataset_and_rotation_labels(data_dir):
    info = data.info("digits", data_dir)
    assert info["splits"] == {"train": 1297, "test": 500} and info["input_shape"] == (28, 28, 1)
    src = data.load("digits", "train", data_dir)
    sub = subset.label_fraction(src, info["label_key"], 0.01, seed=0)
    assert len(sub) == 10 and sorted(int(sub[i]["label"]) for i in range(10)) == list(range(10))
    images = np.stack([src[i]["image"] for i in range(64)])
    out = rotation_preprocess({"image": images, "label": np.zeros(64, np.int64)})
    assert set(np.unique(out["label"])) == {0, 1, 2, 3}
    for i in range(8):  # undoing the rotation gives the preprocessed original
        back = np.rot90(out["input"][i], -int(out["label"][i]), axes=(0, 1))
        plain = data.preprocess("digits", {"image": images[i : i + 1], "label": np.zeros(1)})["input"][0]
        np.testing.assert_allclose(back, (plain * 0.3249 + 0.3052 - 0.2860) / 0.3530, atol=1e-5)


def test_fashion_mnist_rotation_has_4_classes(data_dir):
    require_fashion_mnist()
    assert data.info("fashion_mnist_rotation", data_dir)["num_classes"] == 4


def test_transplant_copies_matching_leaves_and_keeps_the_rest():
    new = {"conv": {"kernel": jnp.zeros((3, 3))}, "head": {"kernel": jnp.zeros((4, 10))}, "extra": jnp.zeros(2)}
    src = {"conv": {"kernel": jnp.ones((3, 3))}, "head": {"kernel": jnp.ones((4, 4))}}
    out, skipped, n = transplant(new, src, "params")
    assert n == 1 and float(out["conv"]["kernel"].sum()) == 9 and float(out["head"]["kernel"].sum()) == 0
    assert any("head" in s and "shape" in s for s in skipped) and any("extra" in s for s in skipped)
    src["head"]["kernel"] = jnp.ones((4, 10))
    out, skipped, n = transplant(new, src, "params", exclude=("head",))
    assert n == 1 and float(out["head"]["kernel"].sum()) == 0 and any("excluded" in s for s in skipped)


def test_init_from_starts_from_the_pretrained_weights(tmp_path, data_dir):
    """Pretrain a few steps, then a 1-step finetune with lr ~0 ends where the pretrained run ended (head excluded:
    fresh), so its accuracy equals a pretrained eval and differs from scratch."""
    from jaxdl.train import train_and_evaluate

    def cfg(**kw):
        c = config_lib.base()
        c.data.name, c.data.data_dir = "digits", data_dir
        c.data.batch_size, c.data.eval_batch_size = 64, 500
        c.model = ml_collections.ConfigDict({"name": "lenet"})
        c.optim.lr = 3e-3
        c.train.steps, c.train.eval_every, c.train.checkpoint_every, c.train.progress = 60, 0, 0, False
        c.train.async_checkpoints = False
        for k, v in kw.items():
            section, key = k.split("__")
            c[section][key] = v
        return c

    pre = train_and_evaluate(cfg(), str(tmp_path / "pre"), devices=jax.devices()[:1])
    # it learned: far above always predicting the test split's most frequent digit (0.114)
    majority = majority_accuracy(eval_labels("digits", data_dir))
    assert pre["eval/accuracy"] > majority + 0.4, (pre["eval/accuracy"], majority)
    tiny = dict(optim__lr=1e-9, train__steps=1)
    same = train_and_evaluate(
        cfg(train__init_from=str(tmp_path / "pre"), **tiny), str(tmp_path / "ft"), devices=jax.devices()[:1]
    )
    scratch = train_and_evaluate(cfg(**tiny), str(tmp_path / "scratch"), devices=jax.devices()[:1])
    assert same["eval/accuracy"] == pytest.approx(pre["eval/accuracy"], abs=1e-6)
    assert scratch["eval/accuracy"] < majority + 0.2, (scratch["eval/accuracy"], majority)  # an untrained net
    with pytest.raises(FileNotFoundError, match="config.train.init_from"):
        train_and_evaluate(
            cfg(train__init_from=str(tmp_path / "nothing")), str(tmp_path / "bad"), devices=jax.devices()[:1]
        )
