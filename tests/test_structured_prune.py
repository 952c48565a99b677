"""Structured pruning of MLP units (`jaxdl.compress.structured`): units with no outgoing weight score 0 and are the
ones removed, the smaller dense model built from the new config computes the same function, and counts/configs
are checked."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import models
from jaxdl.compress.structured import prune_mlp, unit_importance


def build(cfg, key=0):
    with nnx.use_eager_sharding(False):
        return models.make(cfg, input_shape=(40,), num_classes=10, rngs=nnx.Rngs(key))


def test_removing_dead_units_keeps_the_function_and_shrinks_the_model():
    cfg = {"name": "mlp", "hidden": (32, 24)}
    model = build(cfg)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    p = jax.tree.map(np.array, params.to_pure_dict())  # writable copies
    rng = np.random.default_rng(0)
    dead = [np.sort(rng.choice(32, 8, replace=False)), np.sort(rng.choice(24, 12, replace=False))]
    p["blocks"][1]["linear"]["kernel"][dead[0]] = 0.0  # no weight out of these layer-0 units
    p["head"]["kernel"][dead[1]] = 0.0  # nor out of these layer-1 units
    params.replace_by_pure_dict(p)
    x = jnp.asarray(rng.normal(size=(5, 40)), jnp.float32)
    want = nnx.merge(graphdef, params, rest)(x)

    scores = unit_importance(p)
    assert all(np.all(s[d] == 0) and np.all(np.delete(s, d) > 0) for s, d in zip(scores, dead, strict=True))
    new_cfg, new_p, kept = prune_mlp(cfg, p, [24, 12])
    for k, d, w in zip(kept, dead, (32, 24), strict=True):
        np.testing.assert_array_equal(k, np.setdiff1d(np.arange(w), d))  # exactly the dead units went
    assert new_cfg == {"name": "mlp", "hidden": (24, 12)}
    small = build(new_cfg, key=1)
    sg, sp, sr = nnx.split(small, nnx.Param, ...)
    sp.replace_by_pure_dict(new_p)  # shapes must match the smaller model's own parameters
    got = nnx.merge(sg, sp, sr)(x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    n_before = sum(a.size for a in jax.tree.leaves(p))
    n_after = sum(a.size for a in jax.tree.leaves(new_p))
    assert n_after == 40 * 24 + 24 + 24 * 12 + 12 + 12 * 10 + 10 < n_before

    cfg2, p2, kept2 = prune_mlp(cfg, p, 0.5)  # by fraction: the top half by score per layer
    assert cfg2["hidden"] == (16, 12) and [len(k) for k in kept2] == [16, 12]
    assert np.all(np.isin(kept2[0], kept[0]))  # dead units (score 0) are never among the kept
    with pytest.raises(ValueError, match="residual=True"):
        prune_mlp({"name": "mlp", "hidden": (32, 32), "residual": True}, p, 0.5)
    with pytest.raises(ValueError, match="supports config.model.name='mlp'"):
        prune_mlp({"name": "cnn1d"}, p, 0.5)
    with pytest.raises(ValueError, match=r"need one count in \[1, width\]"):
        prune_mlp(cfg, p, [40, 12])
