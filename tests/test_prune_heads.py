"""Head pruning to a smaller dense ViT (`jaxdl.compress.heads.prune_heads`): the model with fewer heads of the same
width, built from the returned config and loaded with the sliced weights, computes the same logits as the original
with the dropped heads zeroed (`mask_heads`, an independent path through the full-size model), has the expected
parameter count, and rejects configs it cannot prune."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import models
from jaxdl.compress.heads import prune_heads
from jaxdl.compress.structured import mask_heads

CFG = {"name": "vit", "patch": 4, "dim": 32, "depth": 3, "heads": 4, "mlp_dim": 64}


def _build(cfg, seed=0):
    with nnx.use_eager_sharding(False):
        model = models.make(cfg, input_shape=(8, 8, 1), num_classes=10, rngs=nnx.Rngs(seed))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, params, rest


def _logits(graphdef, params, rest, pure, x):
    params.replace_by_pure_dict(pure)
    return np.asarray(nnx.merge(graphdef, params, rest)(x))


@pytest.mark.parametrize("keep", [1, 3, 0.5])
def test_pruned_model_equals_masked_original(keep):
    g, params, rest = _build(CFG)
    p = jax.tree.map(np.array, params.to_pure_dict())
    x = jnp.asarray(np.random.default_rng(1).normal(size=(5, 8, 8, 1)), jnp.float32)
    masked, mask = mask_heads(p, keep)
    want = _logits(g, params, rest, masked, x)

    cfg, small, idx = prune_heads(CFG, p, keep)
    count = int(mask[0].sum())
    assert cfg["heads"] == count and cfg["head_dim"] == 8 and idx.shape == (3, count)
    for layer in range(3):
        np.testing.assert_array_equal(idx[layer], np.flatnonzero(mask[layer]))
    g2, params2, rest2 = _build(cfg, seed=7)  # other init: every weight must come from `small`
    got = _logits(g2, params2, rest2, small, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    full = _logits(g, params, rest, p, x)
    assert np.max(np.abs(full - want)) > 1e-4  # dropping live heads does change the function
    # q/k/v/o shrink by the kept fraction, nothing else changes
    n_full = sum(np.size(v) for v in jax.tree.leaves(p))
    n_small = sum(np.size(v) for v in jax.tree.leaves(small))
    assert n_full - n_small == 3 * 4 * (4 - count) * 8 * 32


def test_bad_configs_are_refused():
    _, params, _ = _build(CFG)
    p = params.to_pure_dict()
    with pytest.raises(ValueError, match="heads=8"):
        prune_heads({**CFG, "heads": 8}, p, 2)
    with pytest.raises(ValueError, match="num_kv_heads"):
        prune_heads({**CFG, "num_kv_heads": 2}, p, 2)
    with pytest.raises(ValueError, match="config.model.dim"):
        prune_heads({"name": "vit", "heads": 4}, p, 2)
