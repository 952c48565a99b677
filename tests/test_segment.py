"""Segmentation: the miou evaluator's IoU against a per-class set computation, U-Net output shape, the segment
task's background class, and a short U-Net run beating the all-background baseline."""

import os

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from offline_data import require_fashion_mnist

from jaxdl import models, tasks
from jaxdl.data import canvas, fashion_mnist
from jaxdl.evaluators import miou


def test_iou_equals_set_definition():
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 5, (3, 16, 16))  # -1: ignored pixels
    pred = np.where(rng.uniform(size=labels.shape) < 0.6, np.maximum(labels, 0), rng.integers(0, 5, labels.shape))
    pred[pred == 4] = 3  # class 4 is never predicted
    cm = miou.confusion(labels, pred, 6)  # class 5 is absent from both
    iou = miou.iou_from_confusion(cm)
    keep = labels >= 0
    for c in range(5):
        t, p = (labels == c) & keep, (pred == c) & keep
        assert iou[c] == pytest.approx((t & p).sum() / (t | p).sum())
    assert iou[4] == 0.0 and np.isnan(iou[5])
    assert cm.sum() == keep.sum()


def _make(name, **kw):
    with nnx.use_eager_sharding(False):
        return models.make(dict(name=name, **kw), input_shape=(64, 64, 1), num_classes=11, rngs=nnx.Rngs(0))


def test_unet_shapes_and_bad_input():
    model = _make("seg_unet", width=8)
    logits, seg = nnx.jit(lambda m, x: (m(x), m.segment(x)))(model, jnp.zeros((2, 64, 64, 1)))
    assert logits.shape == (2, 64, 64, 11) and seg.shape == (2, 64, 64) and seg.dtype == jnp.int32
    with pytest.raises(ValueError, match="multiples of 16"):
        models.make(dict(name="seg_unet"), input_shape=(30, 30, 1), num_classes=3, rngs=nnx.Rngs(0))


def test_segment_task_adds_background_and_short_unet_run_beats_all_background():
    """60 Adam steps on 32 canvases: pixel accuracy and object mIoU beat predicting background everywhere."""
    require_fashion_mnist()
    folder = fashion_mnist.raw_dir()
    images = fashion_mnist.read_idx(os.path.join(folder, fashion_mnist.FILES["train"][0]))[:2000]
    labels = fashion_mnist.read_idx(os.path.join(folder, fashion_mnist.FILES["train"][1]))[:2000]
    raw = [e for _, e in canvas.make_split(images, labels, 32, seed=4)]
    batch = {
        k: jnp.asarray(v) for k, v in canvas.seg_preprocess({k: np.stack([e[k] for e in raw]) for k in raw[0]}).items()
    }
    task = tasks.make({"name": "segment"})
    with nnx.use_eager_sharding(False):
        model = task.build(dict(name="seg_unet", width=8), input_shape=(64, 64, 1), num_classes=10, rngs=nnx.Rngs(0))
    assert model.out.out_features == 11  # 10 classes + background
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, batch):
        (loss, _), grads = nnx.value_and_grad(lambda m: task.loss(m, batch, nnx.Rngs(0)), has_aux=True)(model)
        opt.update(model, grads)
        return loss

    for _ in range(60):
        step(model, opt, batch)
    pred = np.asarray(nnx.jit(lambda m, x: m.segment(x))(model, batch["input"]))
    y = np.asarray(batch["label"])
    acc, background_acc = (pred == y).mean(), (y == 0).mean()
    assert acc > background_acc + 0.05, (acc, background_acc)
    fg_iou = ((pred > 0) & (y > 0)).sum() / ((pred > 0) | (y > 0)).sum()  # all-background: 0
    assert fg_iou > 0.5, fg_iou
