"""Attention-head importance and masking (`jaxdl.compress.structured.head_importance` / `mask_heads`) on the
project's ViT: heads whose output projection is zero score exactly 0, are exactly the ones `mask_heads` removes,
and removing them leaves the logits unchanged; the scores match a per-head loop; removing a live head changes
the logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import models
from jaxdl.compress.structured import head_importance, mask_heads

CFG = {"name": "vit", "patch": 4, "dim": 32, "depth": 2, "heads": 4, "mlp_dim": 64}


def test_zero_importance_heads_are_removed_without_changing_outputs():
    with nnx.use_eager_sharding(False):
        model = models.make(CFG, input_shape=(8, 8, 1), num_classes=10, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    p = jax.tree.map(np.array, params.to_pure_dict())
    dead = np.array([[True, False, False, True], [False, True, False, False]])  # [depth, heads]
    p["blocks"]["attn"]["wo"][dead] = 0.0  # these heads write nothing to the residual stream
    params.replace_by_pure_dict(p)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 8, 8, 1)), jnp.float32)
    want = np.asarray(nnx.merge(graphdef, params, rest)(x))

    scores = head_importance(p)
    wv, wo = p["blocks"]["attn"]["wv"].astype(np.float64), p["blocks"]["attn"]["wo"].astype(np.float64)
    for layer in range(2):
        for h in range(4):
            ref = np.linalg.norm(wv[layer, :, h, :]) * np.linalg.norm(wo[layer, h])
            assert scores[layer, h] == pytest.approx(ref, rel=1e-12)
    assert np.all(scores[dead] == 0) and np.all(scores[~dead] > 0)

    # layer 0 has 2 dead heads, layer 1 one: keeping 2 per layer removes both dead heads of layer 0 and, in layer
    # 1, the dead head plus the lowest-scoring live one
    masked, kept = mask_heads(p, 2)
    np.testing.assert_array_equal(kept[0], ~dead[0])
    assert not kept[1, 1] and kept[1].sum() == 2
    masked, kept = mask_heads(p, 0.5)
    np.testing.assert_array_equal(kept[0], ~dead[0])
    # keeping every live head of each layer: exactly the dead ones go, and the function is unchanged
    p_keep = jax.tree.map(np.array, p)
    p_keep["blocks"]["attn"]["wo"][1, 1] = 0.0
    p_keep["blocks"]["attn"]["wo"][1, 2] = 0.0  # now 2 dead heads in each layer
    params.replace_by_pure_dict(p_keep)
    want = np.asarray(nnx.merge(graphdef, params, rest)(x))
    masked, kept = mask_heads(p_keep, 2)
    dead2 = head_importance(p_keep) == 0
    np.testing.assert_array_equal(kept, ~dead2)
    for name in ("wq", "wk", "wv"):
        assert np.all(np.moveaxis(masked["blocks"]["attn"][name], 2, 1)[~kept] == 0)
    params.replace_by_pure_dict(masked)
    np.testing.assert_allclose(np.asarray(nnx.merge(graphdef, params, rest)(x)), want, rtol=1e-6, atol=1e-6)
    # removing one more (live) head changes the logits: the test can fail
    masked1, _ = mask_heads(p_keep, 1)
    params.replace_by_pure_dict(masked1)
    assert np.max(np.abs(np.asarray(nnx.merge(graphdef, params, rest)(x)) - want)) > 1e-4
    with pytest.raises(ValueError, match=r"params\['blocks'\]\['attn'\]"):
        head_importance({"convs": {}})
