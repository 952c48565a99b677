"""Structured pruning of conv channels (`jaxdl.compress.structured.prune_vgg`): channels whose outgoing weights are
all zero (into the next conv, or into the dense layer from the last conv) score 0 and are exactly the ones
removed, the smaller dense VGG built from the new config computes the same logits, the importance matches a
brute-force loop, and unsupported configs fail naming the key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import models
from jaxdl.compress.structured import channel_importance, prune_vgg

CFG = {"name": "vgg", "widths": (8, 12, 16), "convs": 1, "hidden": 24, "norm": "none"}


def build(cfg, key=0):
    with nnx.use_eager_sharding(False):
        return models.make(cfg, input_shape=(16, 16, 1), num_classes=10, rngs=nnx.Rngs(key))


def test_removing_dead_channels_keeps_the_function_and_shrinks_the_model():
    graphdef, params, rest = nnx.split(build(CFG), nnx.Param, ...)
    p = jax.tree.map(np.array, params.to_pure_dict())  # writable copies
    rng = np.random.default_rng(0)
    dead = [np.sort(rng.choice(w, n, replace=False)) for w, n in zip(CFG["widths"], (3, 4, 6), strict=True)]
    p["convs"][1]["kernel"][:, :, dead[0], :] = 0.0  # nothing reads these conv-0 channels
    p["convs"][2]["kernel"][:, :, dead[1], :] = 0.0  # nor these conv-1 channels
    fc = p["fc"]["kernel"].reshape(-1, 16, 24)  # [h*w, c, hidden] of the flattened [2, 2, 16] map
    fc[:, dead[2], :] = 0.0
    p["fc"]["kernel"] = fc.reshape(-1, 24)
    params.replace_by_pure_dict(p)
    x = jnp.asarray(rng.normal(size=(5, 16, 16, 1)), jnp.float32)
    want = nnx.merge(graphdef, params, rest)(x)

    scores = channel_importance(p)
    # brute force: the norm of the filter times the norm of every weight that reads the channel
    for i, sc in enumerate(scores):
        for j in range(len(sc)):
            filt = p["convs"][i]["kernel"][..., j]
            if i < 2:
                reads = p["convs"][i + 1]["kernel"][:, :, j, :]
            else:
                reads = np.stack([p["fc"]["kernel"][r] for r in range(p["fc"]["kernel"].shape[0]) if r % 16 == j])
            assert sc[j] == pytest.approx(
                np.linalg.norm(filt.astype(np.float64)) * np.linalg.norm(reads.astype(np.float64)), rel=1e-9
            )
    assert all(np.all(s[d] == 0) and np.all(np.delete(s, d) > 0) for s, d in zip(scores, dead, strict=True))

    new_cfg, new_p, kept = prune_vgg(CFG, p, [5, 8, 10])
    for k, d, w in zip(kept, dead, CFG["widths"], strict=True):
        np.testing.assert_array_equal(k, np.setdiff1d(np.arange(w), d))  # exactly the dead channels went
    assert new_cfg == {**CFG, "widths": (5, 8, 10)}
    sg, sp, sr = nnx.split(build(new_cfg, key=1), nnx.Param, ...)
    sp.replace_by_pure_dict(new_p)  # shapes must match the smaller model's own parameters
    np.testing.assert_allclose(nnx.merge(sg, sp, sr)(x), want, rtol=1e-5, atol=1e-5)
    n_after = sum(a.size for a in jax.tree.leaves(new_p))
    assert n_after == 9 * 5 + 5 + 9 * 5 * 8 + 8 + 9 * 8 * 10 + 10 + 4 * 10 * 24 + 24 + 24 * 10 + 10
    assert n_after < sum(a.size for a in jax.tree.leaves(p))

    cfg2, _, kept2 = prune_vgg(CFG, p, 0.5)  # by fraction: the top half by score per layer
    assert cfg2["widths"] == (4, 6, 8) and all(np.all(np.isin(a, b)) for a, b in zip(kept2, kept, strict=True))


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({**CFG, "norm": "batch"}, "config.model.norm='batch': prune_vgg needs norm='none'"),
        ({**CFG, "convs": 2}, "config.model.convs=2: prune_vgg needs convs=1"),
        ({"name": "lenet"}, "supports config.model.name='vgg'"),
    ],
)
def test_unsupported_configs_fail_naming_the_key(cfg, match):
    p = jax.tree.map(np.asarray, nnx.split(build(CFG), nnx.Param, ...)[1].to_pure_dict())
    with pytest.raises(ValueError, match=match):
        prune_vgg(cfg, p, 0.5)
    if cfg.get("norm") == "batch":
        with pytest.raises(ValueError, match=r"need one count in \[1, width\]"):
            prune_vgg(CFG, p, [9, 1, 1])
