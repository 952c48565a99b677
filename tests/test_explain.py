"""Explanations (jaxdl.explain, the `attributions` evaluator, the attention hook of jaxdl.layers.attention).

Independent references: the closed-form IG of a linear model, the quadrature orders of the IG path sum (left
Riemann O(1/m), trapezoid O(1/m²) on a smooth CNN), central finite differences in float64 for saliency, rollout
against the matrix product written out with numpy, the models' outputs without the hook, and Adebayo et al.'s
randomization check in tests/test_explain_evaluator.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import models
from jaxdl.explain import attributions as attr
from jaxdl.explain import rollout as rollout_lib
from jaxdl.explain import sanity


def _model(config, shape, seed=0):
    with nnx.use_eager_sharding(False):
        return models.make(config, input_shape=shape, num_classes=10, rngs=nnx.Rngs(params=seed))


def test_ig_of_a_linear_model_is_the_closed_form():
    """f(x) = W x + b: IG_i = (x_i − x'_i) · W[c, i] exactly, for any m and rule."""
    w, b = jax.random.normal(jax.random.key(0), (10, 12)), jax.random.normal(jax.random.key(1), (10,))
    x, base = jax.random.normal(jax.random.key(2), (3, 12)), jax.random.normal(jax.random.key(3), (3, 12))
    target = jnp.array([1, 7, 3])
    f = lambda z: z @ w.T + b
    for rule in attr.RULES:
        ig = attr.integrated_gradients(f, x, target, base, steps=3, rule=rule)
        np.testing.assert_allclose(ig, (x - base) * w[target], rtol=1e-5, atol=1e-6)
        gap, _ = attr.completeness_gap(f, x, target, ig, base)
        assert np.max(np.abs(gap)) < 1e-4


class SmoothCnn(nnx.Module):
    """conv3x3(8) -> tanh -> conv3x3 stride 2 (8) -> tanh -> spatial mean -> dense 10: smooth everywhere (no ReLU
    or max pooling kinks), so the quadrature orders show."""

    def __init__(self, rngs: nnx.Rngs):
        self.c1 = nnx.Conv(1, 8, (3, 3), rngs=rngs)
        self.c2 = nnx.Conv(8, 8, (3, 3), strides=(2, 2), rngs=rngs)
        self.head = nnx.Linear(8, 10, rngs=rngs)

    def __call__(self, x):
        h = jnp.tanh(self.c2(jnp.tanh(self.c1(x))))
        return self.head(jnp.mean(h, axis=(1, 2)))


def test_ig_completeness_gap_shrinks_with_steps_at_the_rule_order():
    """A small smooth CNN: |Σ IG − (f(x) − f(x'))| falls with m like 1/m (left Riemann sum) and 1/m² (trapezoid);
    at m = 64 the trapezoid gap is < 0.1 % of |f(x) − f(x')|."""
    model = SmoothCnn(nnx.Rngs(0))
    x = 3.0 * jax.random.normal(jax.random.key(0), (4, 14, 14, 1))
    target = jnp.argmax(model(x), -1)
    gaps = {}
    for rule in ("riemann_left", "trapezoid"):
        for m in (4, 16, 64):
            ig = attr.integrated_gradients(model, x, target, -1.0, steps=m, rule=rule)
            gap, delta = attr.completeness_gap(model, x, target, ig, -1.0)
            gaps[rule, m] = float(jnp.mean(jnp.abs(gap)))
    scale = float(jnp.mean(jnp.abs(delta)))
    left = gaps["riemann_left", 16] / gaps["riemann_left", 64]
    trap = gaps["trapezoid", 16] / gaps["trapezoid", 64]
    assert 2.5 < left < 6.0, gaps  # O(1/m): x4 steps -> gap / 4
    assert trap > 10.0, gaps  # O(1/m²): x4 steps -> gap / 16
    assert gaps["trapezoid", 4] > gaps["trapezoid", 16] > gaps["trapezoid", 64]
    assert gaps["trapezoid", 64] < 1e-3 * scale, (gaps, scale)


def test_saliency_equals_central_finite_differences():
    """∂ logit_c / ∂x of a small tanh MLP, in float64, against (f(x + h e_i) − f(x − h e_i)) / 2h."""
    with jax.enable_x64(True):
        k = jax.random.split(jax.random.key(0), 4)
        w1, w2 = jax.random.normal(k[0], (6, 16), jnp.float64), jax.random.normal(k[1], (16, 5), jnp.float64)
        x = jax.random.normal(k[2], (2, 6), jnp.float64)
        f = lambda z: jnp.tanh(z @ w1) @ w2
        target = jnp.array([3, 0])
        grad = jax.grad(lambda z: jnp.sum(jnp.take_along_axis(f(z), target[:, None], 1)))(x)
        np.testing.assert_allclose(attr.saliency(f, x.astype(jnp.float32), target), grad, rtol=1e-4, atol=1e-5)
        h, fd = 1e-6, np.zeros((2, 6))
        for i in range(6):
            e = jnp.zeros((2, 6), jnp.float64).at[:, i].set(h)
            fd[:, i] = (f(x + e)[jnp.arange(2), target] - f(x - e)[jnp.arange(2), target]) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    # the project's float32 path on the same function
    f32 = lambda z: jnp.tanh(z @ w1.astype(jnp.float32)) @ w2.astype(jnp.float32)
    np.testing.assert_allclose(attr.saliency(f32, x.astype(jnp.float32), target), fd, rtol=1e-3, atol=1e-4)


def test_rollout_equals_the_hand_computed_product():
    """2 layers, 2 heads, 3 tokens: Â_l = ½ mean_h(A_l) + ½ I (rows already sum to 1), rollout = Â_2 Â_1."""
    a1 = np.array(
        [
            [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]],
            [[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.0, 0.0, 1.0]],
        ]
    )
    a2 = np.array(
        [
            [[0.2, 0.2, 0.6], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
            [[0.6, 0.2, 0.2], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]],
        ]
    )
    hat1 = 0.5 * a1.mean(0) + 0.5 * np.eye(3)  # [[.75,.25,0],[.25,.625,.125],[.05,.075,.875]]
    hat2 = 0.5 * a2.mean(0) + 0.5 * np.eye(3)
    expected = hat2 @ hat1
    np.testing.assert_allclose(hat1[1], [0.25, 0.625, 0.125])
    att = jnp.asarray(np.stack([a1, a2])[:, None], jnp.float32)  # [depth 2, batch 1, heads 2, 3, 3]
    out = rollout_lib.rollout(att)
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)
    np.testing.assert_allclose(out[0].sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(rollout_lib.token_relevance(att, cls=True)[0], expected[0, 1:], rtol=1e-6)
    with pytest.raises(ValueError, match="head_fusion"):
        rollout_lib.rollout(att, head_fusion="median")
    with pytest.raises(ValueError, match=r"\[depth, batch, heads, L, L\]"):
        rollout_lib.rollout(att[0])


def test_models_return_attention_without_changing_their_output():
    """ViT (scanned blocks, class token) and BERT (padding): the hook's logits equal the fused path's; each row
    of probabilities sums to 1; BERT's padded keys get probability 0; layer 1 of the ViT equals softmax(q kᵀ/√d)
    recomputed from the block's own projections."""
    vit = _model(
        {"name": "vit", "patch": 7, "depth": 2, "dim": 16, "heads": 2, "mlp_dim": 32, "pool": "cls"}, (28, 28, 1)
    )
    x = jax.random.normal(jax.random.key(0), (3, 28, 28, 1))
    logits, att = vit(x, return_attention=True)
    np.testing.assert_allclose(logits, vit(x), rtol=1e-5, atol=1e-5)
    assert att.shape == (2, 3, 2, 17, 17)
    np.testing.assert_allclose(att.sum(-1), 1.0, rtol=1e-5)
    from jaxdl.models.vision.vit import patchify

    h = vit.embed(patchify(x, 7))
    h = jnp.concatenate([jnp.broadcast_to(vit.cls[...], (3, 1, 16)), h], 1) + vit.pos[...]
    block0 = nnx.merge(*nnx.split(vit.blocks))  # the stacked blocks; take layer 0's parameters
    g, state = nnx.split(block0)
    layer0 = nnx.merge(g, jax.tree.map(lambda a: a[0], state))
    q = layer0.attn.project_q(layer0.norm1(h))
    k, _ = layer0.attn.project_kv(layer0.norm1(h))
    ref = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(8), axis=-1)
    np.testing.assert_allclose(att[0], ref, rtol=1e-4, atol=1e-6)

    bert = _model({"name": "bert", "head": "classify", "vocab_size": 50, "depth": 2, "dim": 16, "heads": 2}, (6,))
    ids = jnp.array([[5, 7, 9, 0, 0, 0], [3, 4, 5, 6, 7, 8]])
    logits, att = bert(ids, return_attention=True)
    np.testing.assert_allclose(logits, bert(ids), rtol=1e-5, atol=1e-5)
    assert att.shape == (2, 2, 2, 6, 6)
    np.testing.assert_allclose(att.sum(-1), 1.0, rtol=1e-5)
    assert float(jnp.max(att[:, 0, :, :, 3:])) == 0.0


def test_randomize_and_spearman():
    """randomize swaps exactly the named top-level layers; spearman is scipy's ρ of |a| vs |b| per example."""
    trained = {"head": {"w": jnp.ones(2)}, "fc": {"w": jnp.zeros(2)}}
    fresh = {"head": {"w": 5 * jnp.ones(2)}, "fc": {"w": 7 * jnp.ones(2)}}
    out = sanity.randomize(trained, fresh, ["head"])
    assert float(out["head"]["w"][0]) == 5.0 and float(out["fc"]["w"][0]) == 0.0
    with pytest.raises(ValueError, match=r"layers \['conv9'\]"):
        sanity.randomize(trained, fresh, ["conv9"])
    a = np.array([[1.0, -2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    b = np.array([[4.0, 3.0, -2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_allclose(sanity.spearman(a, b), [-1.0, 1.0])
