"""First-order Taylor channel importance (`jaxdl.compress.taylor`) and pruning by it (`prune_vgg` / `prune_mlp` with
`scores=`): the parameter-side term Σ θ·∂L/∂θ over a channel's filter and bias equals Molchanov et al.'s
activation × gradient Σ a·∂L/∂a computed through a hand-written reference forward, and the central finite
difference of the loss under a scale on the channel; the reductions over calibration batches; the smaller dense model
pruned by the Taylor ranking computes exactly what the original with those channels masked computes; bad input
fails naming the bad thing."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl import models
from jaxdl.compress.structured import filter_l1_importance, prune_mlp, prune_vgg
from jaxdl.compress.taylor import channel_scale_grads, taylor_importance

CFG = {"name": "vgg", "widths": (4, 6, 8), "convs": 1, "hidden": 12, "norm": "none"}
LAYERS = [("convs", i) for i in range(3)]


def build(cfg, shape=(16, 16, 1), key=0):
    with nnx.use_eager_sharding(False):
        return nnx.split(models.make(cfg, input_shape=shape, num_classes=10, rngs=nnx.Rngs(key)), nnx.Param, ...)


def vgg_setup():
    """graphdef, params State, rest, pure params with random (non-zero) biases, inputs [8, 16, 16, 1], labels [8]."""
    graphdef, params, rest = build(CFG)
    rng = np.random.default_rng(0)
    p = jax.tree.map(np.array, params.to_pure_dict())
    for i in range(3):
        p["convs"][i]["bias"] = rng.normal(scale=0.3, size=p["convs"][i]["bias"].shape).astype(np.float32)
    params.replace_by_pure_dict(p)
    x = jnp.asarray(rng.normal(size=(8, 16, 16, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, 8))
    return graphdef, params, rest, p, x, y


def model_loss(graphdef, params, rest):
    def loss(pd, batch):
        st = jax.tree.map(lambda v: v, params)
        st.replace_by_pure_dict(pd)
        logits = nnx.merge(graphdef, st, rest)(batch[0])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).sum()

    return loss


def reference_forward(p, x, taps):
    """The VGG written out with lax ops; `taps[i]` ([b, h, w, c], zeros) is added to conv i's post-relu activation, so
    ∂L/∂taps[i] = ∂L/∂a_i. Returns (logits, the activations a_i)."""
    acts = []
    for i in range(3):
        k, b = p["convs"][i]["kernel"], p["convs"][i]["bias"]
        z = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b
        a = jax.nn.relu(z) + taps[i]
        acts.append(a)
        bs, h, w, c = a.shape
        x = a.reshape(bs, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
    x = jax.nn.relu(x.reshape(x.shape[0], -1) @ p["fc"]["kernel"] + p["fc"]["bias"])
    return x @ p["head"]["kernel"] + p["head"]["bias"], acts


def test_scale_gradient_equals_activation_times_gradient_and_finite_difference():
    graphdef, params, rest, p, x, y = vgg_setup()
    loss = model_loss(graphdef, params, rest)
    terms = [np.asarray(t) for t in channel_scale_grads(p, jax.grad(loss)(p, (x, y)), LAYERS)]

    # Molchanov et al.'s form through an independent forward: Σ over examples and positions of a · ∂L/∂a
    taps = [jnp.zeros((8, 16 // 2**i, 16 // 2**i, w), jnp.float32) for i, w in enumerate(CFG["widths"])]

    def ref_loss(taps):
        logits, acts = reference_forward(p, x, taps)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).sum(), acts

    np.testing.assert_allclose(reference_forward(p, x, taps)[0], nnx.merge(graphdef, params, rest)(x), atol=1e-5)
    grads, acts = jax.grad(ref_loss, has_aux=True)(taps)
    for t, a, g in zip(terms, acts, grads, strict=True):
        np.testing.assert_allclose(t, np.sum(np.asarray(a * g, np.float64), axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)

    # central difference of the loss with channel j's filter and bias scaled by (1 ± eps)
    eps = 1e-2
    f = jax.jit(loss)
    for i in range(3):
        for j in range(CFG["widths"][i]):

            def scaled(s, i=i, j=j):
                q = jax.tree.map(np.array, p)
                q["convs"][i]["kernel"][..., j] *= s
                q["convs"][i]["bias"][j] *= s
                return float(f(q, (x, y)))

            fd = (scaled(1 + eps) - scaled(1 - eps)) / (2 * eps)
            assert terms[i][j] == pytest.approx(fd, rel=5e-2, abs=2e-3 * float(np.max(np.abs(terms[i]))))
    # not vacuous: most channels are live (a channel whose relu never fires scores exactly 0 both ways), and the
    # biases' share is visible (without it the terms would differ)
    assert sum(np.count_nonzero(t) for t in terms) >= 12
    bias_part = [
        np.asarray(p["convs"][i]["bias"]) * np.asarray(jax.grad(loss)(p, (x, y))["convs"][i]["bias"]) for i in range(3)
    ]
    assert max(float(np.max(np.abs(b))) for b in bias_part) > 1e-2 * max(float(np.max(np.abs(t))) for t in terms)


def test_taylor_importance_reductions_over_calibration_batches():
    graphdef, params, rest, p, x, y = vgg_setup()
    loss = model_loss(graphdef, params, rest)
    per_example = [
        [
            np.asarray(t, np.float64)
            for t in channel_scale_grads(p, jax.grad(loss)(p, (x[n : n + 1], y[n : n + 1])), LAYERS)
        ]
        for n in range(8)
    ]
    batches = [(x[n : n + 1], y[n : n + 1]) for n in range(8)]
    sq = taylor_importance(loss, p, batches, LAYERS)
    ab = taylor_importance(loss, p, iter(batches), LAYERS, reduce="abs")  # any iterable, consumed once
    for i in range(3):
        col = np.stack([e[i] for e in per_example])
        np.testing.assert_allclose(sq[i], np.mean(col**2, axis=0), rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(ab[i], np.mean(np.abs(col), axis=0), rtol=1e-4, atol=1e-7)
    # the per-example terms add up to the batch's (the loss is a sum over examples)
    whole = channel_scale_grads(p, jax.grad(loss)(p, (x, y)), LAYERS)
    for i in range(3):
        np.testing.assert_allclose(sum(e[i] for e in per_example), whole[i], rtol=1e-4, atol=1e-5)


def test_taylor_pruned_vgg_equals_the_masked_original():
    graphdef, params, rest, p, x, y = vgg_setup()
    loss = model_loss(graphdef, params, rest)
    scores = taylor_importance(loss, p, [(x[:4], y[:4]), (x[4:], y[4:])], LAYERS)
    counts = [2, 3, 5]
    cfg, new_p, kept = prune_vgg(CFG, p, counts, scores=scores)
    assert cfg["widths"] == (2, 3, 5)
    masked = jax.tree.map(np.array, p)
    for i, (s, k, c) in enumerate(zip(scores, kept, counts, strict=True)):
        np.testing.assert_array_equal(k, np.sort(np.argsort(-s)[:c]))  # the top-`count` channels by Taylor score
        drop = np.setdiff1d(np.arange(len(s)), k)
        masked["convs"][i]["kernel"][..., drop] = 0.0  # a zero filter and bias: relu(0) = 0 downstream
        masked["convs"][i]["bias"][drop] = 0.0
    params.replace_by_pure_dict(masked)
    xr = jnp.asarray(np.random.default_rng(1).normal(size=(6, 16, 16, 1)), jnp.float32)
    want = nnx.merge(graphdef, params, rest)(xr)
    sg, sp, sr = build(cfg, key=3)
    sp.replace_by_pure_dict(new_p)
    got = nnx.merge(sg, sp, sr)(xr)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    params.replace_by_pure_dict(p)
    assert np.max(np.abs(nnx.merge(graphdef, params, rest)(xr) - want)) > 1e-3  # the pruned channels mattered

    # a masked channel scores exactly 0 (θ = 0 on its whole filter and bias)
    zero = taylor_importance(loss, masked, [(x, y)], LAYERS)
    assert all(np.all(z[np.setdiff1d(np.arange(len(z)), k)] == 0) for z, k in zip(zero, kept, strict=True))
    # the L1 filter score, by a loop
    l1 = filter_l1_importance(p)
    assert l1[1][4] == pytest.approx(sum(abs(float(v)) for v in p["convs"][1]["kernel"][..., 4].ravel()), rel=1e-9)


def test_taylor_pruned_mlp_equals_the_masked_original():
    cfg = {"name": "mlp", "hidden": (10, 7)}
    graphdef, params, rest = build(cfg, shape=(5,))
    p = jax.tree.map(np.array, params.to_pure_dict())
    rng = np.random.default_rng(2)
    x, y = jnp.asarray(rng.normal(size=(16, 5)), jnp.float32), jnp.asarray(rng.integers(0, 10, 16))
    loss = model_loss(graphdef, params, rest)
    layers = [("blocks", i, "linear") for i in range(2)]
    scores = taylor_importance(loss, p, [(x, y)], layers)
    new_cfg, new_p, kept = prune_mlp(cfg, p, [4, 3], scores=scores)
    masked = jax.tree.map(np.array, p)
    for i, k in enumerate(kept):
        drop = np.setdiff1d(np.arange(cfg["hidden"][i]), k)
        masked["blocks"][i]["linear"]["kernel"][:, drop] = 0.0
        masked["blocks"][i]["linear"]["bias"][drop] = 0.0
    params.replace_by_pure_dict(masked)
    sg, sp, sr = build(new_cfg, shape=(5,), key=4)
    sp.replace_by_pure_dict(new_p)
    np.testing.assert_allclose(nnx.merge(sg, sp, sr)(x), nnx.merge(graphdef, params, rest)(x), rtol=1e-5, atol=1e-5)


def test_bad_input_fails_naming_it():
    graphdef, params, rest, p, x, y = vgg_setup()
    loss = model_loss(graphdef, params, rest)
    with pytest.raises(ValueError, match=r"layer path \('convs', 7\): no key 7"):
        taylor_importance(loss, p, [(x, y)], [("convs", 7)])
    with pytest.raises(ValueError, match=r"layer path \('fc',\) holds no 'kernel'|layer path \('convs',\) holds no"):
        taylor_importance(loss, p, [(x, y)], [("convs",)])
    with pytest.raises(ValueError, match="batches is empty"):
        taylor_importance(loss, p, [], LAYERS)
    with pytest.raises(ValueError, match="reduce='max' is not one of"):
        taylor_importance(loss, p, [(x, y)], LAYERS, reduce="max")
    with pytest.raises(ValueError, match=r"scores shapes \[\(4,\), \(6,\)\] do not match the layer widths \[4, 6, 8\]"):
        prune_vgg(CFG, p, 0.5, scores=[np.ones(4), np.ones(6)])
    with pytest.raises(ValueError, match="NaN or infinity"):
        prune_vgg(CFG, p, 0.5, scores=[np.ones(4), np.ones(6), np.full(8, np.nan)])
