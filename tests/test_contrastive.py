"""Contrastive losses (jaxdl.tasks.contrastive) against direct numpy formulas, and the CLIP loss and gradients on
8 data-parallel devices equal to 1 device (the logits must contrast every image with the whole global batch)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxdl import config as config_lib
from jaxdl.models.vision import clip
from jaxdl.parallel import rules as rules_lib
from jaxdl.parallel.mesh import make_mesh
from jaxdl.state import sharding_context
from jaxdl.tasks import contrastive


def _logits_and_texts(b=6, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(b, b)).astype(np.float32) * 3
    texts = rng.integers(1, 4, size=(b, 2)).astype(np.int32)  # few distinct values: some rows repeat
    texts[1] = texts[4]  # at least one duplicate pair
    return logits, texts


def _np_infonce(logits, dup):
    """Direct formula: mean over i of -log(e^{l_ii} / sum_{j kept} e^{l_ij}), rows and columns, averaged."""
    b = len(logits)
    total = 0.0
    for mat in (logits, logits.T):
        for i in range(b):
            kept = [j for j in range(b) if j == i or not dup[i, j]]
            total += -(mat[i, i] - np.log(np.sum(np.exp(mat[i, kept].astype(np.float64)))))
    return total / (2 * b)


def _np_siglip(logits, dup):
    """Direct formula: -1/b sum_{ij kept} log(1 / (1 + exp(-z_ij l_ij)))."""
    b = len(logits)
    total = 0.0
    for i in range(b):
        for j in range(b):
            if i != j and dup[i, j]:
                continue
            z = 1.0 if i == j else -1.0
            total += np.log1p(np.exp(-z * float(logits[i, j])))
    return total / b


def _np_duplicates(texts):
    b = len(texts)
    return np.array([[i != j and (texts[i] == texts[j]).all() for j in range(b)] for i in range(b)])


def test_duplicate_mask_matches_pairwise_comparison():
    _, texts = _logits_and_texts()
    got = np.asarray(contrastive.duplicate_mask(jnp.asarray(texts)))
    np.testing.assert_array_equal(got, _np_duplicates(texts))
    assert got.any() and not got.diagonal().any()


@pytest.mark.parametrize("masked", [False, True])
def test_infonce_matches_direct_formula(masked):
    logits, texts = _logits_and_texts()
    dup = _np_duplicates(texts) if masked else np.zeros((6, 6), bool)
    got = contrastive.infonce(jnp.asarray(logits), jnp.asarray(dup) if masked else None)
    np.testing.assert_allclose(float(got), _np_infonce(logits, dup), rtol=1e-5)


@pytest.mark.parametrize("masked", [False, True])
def test_siglip_matches_direct_formula(masked):
    logits, texts = _logits_and_texts(seed=1)
    dup = _np_duplicates(texts) if masked else np.zeros((6, 6), bool)
    got = contrastive.siglip(jnp.asarray(logits), jnp.asarray(dup) if masked else None)
    np.testing.assert_allclose(float(got), _np_siglip(logits, dup), rtol=1e-5)


def test_bad_loss_name_is_named():
    with pytest.raises(ValueError, match="config.task.loss='clip'"):
        contrastive.Task(loss="clip")


TINY = dict(
    embed_dim=16,
    image_depth=8,
    text_length=12,
    text_dim=16,
    text_depth=1,
    text_heads=2,
    text_mlp_dim=32,
)


def _batch(b=16):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(b, 28, 28, 1)).astype(np.float32)
    text = np.zeros((b, 12), np.int32)
    for i in range(b):
        n = rng.integers(3, 12)
        text[i, :n] = rng.integers(97, 100, size=n)  # 'a'..'c'
    text[5] = text[11]  # a duplicate across device shards
    return {"input": x, "text": text}


def _loss_and_grads(devices):
    """One step's (InfoNCE, SigLIP) losses and gradients of the contrastive task on a data=len(devices) mesh,
    jitted as the trainer does (one compile for both losses: a traced weight picks the loss)."""
    c = config_lib.base()
    c.mesh.data = len(devices)
    mesh = make_mesh(c.mesh, devices)
    rules = rules_lib.resolve("dp", c.sharding.rules)
    with nnx.use_eager_sharding(False):
        model = clip.Model(**TINY, input_shape=(28, 28, 1), num_classes=10, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    shardings = rules_lib.tree_shardings(params, mesh, rules)
    rest_shardings = rules_lib.tree_shardings(rest, mesh, rules)
    batch_sharding = rules_lib.batch_sharding(mesh, rules)
    batch = jax.device_put(_batch(), batch_sharding)
    infonce, siglip = contrastive.Task(loss="infonce"), contrastive.Task(loss="siglip")

    def loss_fn(params, rest, batch, w):
        with sharding_context(c, mesh, rules):
            m = nnx.merge(graphdef, params, rest, copy=True)
            a = infonce.loss(m, batch, nnx.Rngs(0))[0]
            m = nnx.merge(graphdef, params, rest, copy=True)
            return w * a + (1 - w) * siglip.loss(m, batch, nnx.Rngs(0))[0]

    replicated = NamedSharding(mesh, PartitionSpec())
    step = jax.jit(
        jax.value_and_grad(loss_fn),
        in_shardings=(shardings, rest_shardings, batch_sharding, replicated),
        out_shardings=(replicated, shardings),
    )
    params, rest = jax.device_put(params, shardings), jax.device_put(rest, rest_shardings)
    out = {}
    for name, w in (("infonce", 1.0), ("siglip", 0.0)):
        value, grads = step(params, rest, batch, jnp.float32(w))
        leaves = {jax.tree_util.keystr(p): np.asarray(g) for p, g in jax.tree_util.tree_leaves_with_path(grads)}
        out[name] = (float(value), leaves)
    return out


def test_eight_devices_give_the_one_device_loss_and_grads():
    assert len(jax.devices()) == 8
    one, eight = _loss_and_grads(jax.devices()[:1]), _loss_and_grads(jax.devices())
    for loss in ("infonce", "siglip"):
        (l1, g1), (l8, g8) = one[loss], eight[loss]
        np.testing.assert_allclose(l8, l1, rtol=1e-5, err_msg=loss)
        assert g1.keys() == g8.keys()
        scale = max(np.max(np.abs(g)) for g in g1.values())
        for k in g1:
            # rtol 1e-4 of the leaf's largest entry; atol 1e-6 of the largest gradient for leaves whose true
            # gradient is 0 (attention key biases; the logit bias under InfoNCE) and hold float noise
            assert np.max(np.abs(g8[k] - g1[k])) <= 1e-4 * np.max(np.abs(g1[k])) + 1e-6 * scale, (loss, k)
    # a "local negatives only" loss (each device contrasting its own 2 pairs) is a different number: the test
    # above would catch a loss that forgot the other shards' texts
    logits = np.asarray(jax.random.normal(jax.random.key(0), (16, 16))) * 5
    blocks = [contrastive.infonce(jnp.asarray(logits[i : i + 2, i : i + 2])) for i in range(0, 16, 2)]
    assert abs(float(np.mean(blocks)) - float(contrastive.infonce(jnp.asarray(logits)))) > 0.1
