"""DETR (jaxdl.models `detr`, task `detect` set-prediction losses), post-norm and pre-norm: output shapes, the
in-step JAX auction matcher equal to scipy's Hungarian matching on the model's own cost matrices (every object
matched), and a short run that learns."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from offline_data import require_fashion_mnist

from jaxdl import models, tasks
from jaxdl.data import canvas, fashion_mnist


def _model(**kw):
    with nnx.use_eager_sharding(False):
        return models.make(
            dict(name="detr", width=8, dim=32, heads=2, mlp=64, queries=8, **kw),
            input_shape=(64, 64, 1),
            num_classes=10,
            rngs=nnx.Rngs(0),
        )


def _canvases(n):
    folder = fashion_mnist.raw_dir()
    images = fashion_mnist.read_idx(os.path.join(folder, fashion_mnist.FILES["train"][0]))[:2000]
    labels = fashion_mnist.read_idx(os.path.join(folder, fashion_mnist.FILES["train"][1]))[:2000]
    raw = [e for _, e in canvas.make_split(images, labels, n, seed=11)]
    return {k: jnp.asarray(v) for k, v in canvas.preprocess({k: np.stack([e[k] for e in raw]) for k in raw[0]}).items()}


@pytest.mark.parametrize("prenorm,pos_std", [(False, 0.02), (True, 1.0)])  # config.py's detr, detr3
def test_detr_matchers_agree_and_short_run_learns(prenorm, pos_std):
    require_fashion_mnist()
    batch = _canvases(16)
    model = _model(prenorm=prenorm, pos_std=pos_std)
    out = nnx.jit(lambda m, x: m(x))(model, batch["input"])
    assert out["logits"].shape == (16, 2, 8, 11) and out["boxes"].shape == (16, 2, 8, 4)

    # the JAX auction matcher inside the loss gives the same loss as scipy's matching through a host callback
    auction, scipy = (
        tasks.make({"name": "detect", "matcher": "auction"}),
        tasks.make({"name": "detect", "matcher": "scipy"}),
    )
    la, ma = jax.jit(lambda o: auction.set_losses(model, o, batch["boxes"], batch["label"]))(out)
    ls, ms = jax.jit(lambda o: scipy.set_losses(model, o, batch["boxes"], batch["label"]))(out)
    np.testing.assert_allclose(float(la), float(ls), rtol=1e-4)
    assert float(ma["unassigned"]) == 0.0 and float(ms["unassigned"]) == 0.0
    rng = np.random.default_rng(0)
    cost = jnp.asarray(rng.uniform(0, 3, (5, 6, 8)).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(jax.jit(auction.match)(cost)), np.asarray(scipy.match(cost)))

    task = tasks.make({"name": "detect", "l1_weight": 5.0, "giou_weight": 2.0})
    opt = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, batch):
        (loss, m), grads = nnx.value_and_grad(lambda mm: task.loss(mm, batch, nnx.Rngs(0)), has_aux=True)(model)
        opt.update(model, grads)
        return loss, m

    first, m0 = step(model, opt, batch)
    for _ in range(60):
        loss, m = step(model, opt, batch)
    assert float(loss) < 0.75 * float(first), (float(first), float(loss))
    assert float(m["giou"]) < float(m0["giou"]) - 0.1, (float(m0["giou"]), float(m["giou"]))
    assert float(m["unassigned"]) == 0.0
    det = nnx.jit(lambda mm, x: mm.detect(x, max_detections=5))(model, batch["input"])
    assert det["boxes"].shape == (16, 5, 4) and (np.diff(np.asarray(det["scores"]), axis=1) <= 0).all()


def test_detr_bad_config():
    with pytest.raises(ValueError, match="multiples of 16"):
        models.make(dict(name="detr"), input_shape=(20, 20, 1), num_classes=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="config.model.pos_std"):
        models.make(dict(name="detr", pos_std=0.0), input_shape=(64, 64, 1), num_classes=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="config.task.matcher"):
        tasks.make({"name": "detect", "matcher": "greedy"})
