"""DeepFM (jaxdl/models/recsys/deepfm.py) against a NumPy re-implementation built from the raw MovieLens catalogue:
the FM pairwise term as a brute-force double loop over field pairs, the genre embedding bag from the multi-hot
rows, the MLP from the kernels; score / score_all / __call__ shapes and agreement; bad ids and options raise
errors naming them."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from jaxdl import models
from jaxdl.data import movielens as ml

NUM_USERS, NUM_ITEMS = 943, 1682


@pytest.fixture(scope="module")
def raw():
    return ml.load_raw()


def make(seed=0, **kw):
    cfg = ml_collections.ConfigDict(dict(name="deepfm", num_users=NUM_USERS, dim=3, mlp_dims=(5, 4)) | kw)
    with nnx.use_eager_sharding(False):
        model = models.make(cfg, input_shape=(), num_classes=NUM_ITEMS, rngs=nnx.Rngs(params=seed))
    # biases start at zero: give every first-order weight a random value so that term is tested too
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda p: jnp.asarray(rng.normal(0, 0.5, p.shape), p.dtype), params)
    return nnx.merge(graphdef, params, rest)


def reference_score(model, raw, user, items, age, gender, occupation, pooling="mean"):
    """NumPy: b + sum_f w_f + sum_{f<g} <e_f, e_g> (double loop) + MLP(concat e_f), fields in deepfm.FIELDS order."""
    p = lambda name: np.asarray(getattr(model, name)[...], np.float64)
    year = np.where(raw.year > 0, np.clip((raw.year - 1920) // 5 + 1, 1, 17), 0)
    out = np.zeros(items.shape)
    for b in range(items.shape[0]):
        for c in range(items.shape[1]):
            u, i = user[b], items[b, c]
            hot = raw.genres[i].astype(np.float64)
            denom = max(hot.sum(), 1.0) if pooling == "mean" else 1.0
            ids = dict(user=u, age=min(age[b] // 10, 9), gender=gender[b], occupation=occupation[b], item=i,
                       year=year[i])  # fmt: skip
            e, w = [], []
            for f in ("user", "age", "gender", "occupation", "item", "genres", "year"):
                if f == "genres":
                    e.append(hot @ p("genres_emb") / denom)
                    w.append(hot @ p("genres_w") / denom)
                else:
                    e.append(p(f"{f}_emb")[ids[f]])
                    w.append(p(f"{f}_w")[ids[f]])
            pair = sum(e[f] @ e[g] for f in range(len(e)) for g in range(f + 1, len(e)))
            h = np.concatenate(e)
            for layer in model.layers:
                h = np.maximum(h @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...]), 0)
            deep = h @ np.asarray(model.out.kernel[...])[:, 0] + np.asarray(model.out.bias[...])[0]
            out[b, c] = p("global_bias") + sum(w) + pair + deep
    return out


@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_score_equals_bruteforce_fm_and_mlp(raw, pooling):
    model = make(seed=1, pooling=pooling)
    rng = np.random.default_rng(0)
    user = rng.integers(0, NUM_USERS, 3)
    items = rng.integers(0, NUM_ITEMS, (3, 4))
    items[0, 0] = 266  # item 267: unknown year (bucket 0)
    side = dict(age=np.array([7, 35, 95]), gender=np.array([0, 1, 1]), occupation=np.array([0, 12, 20]))
    got = np.asarray(model.score(jnp.asarray(user), jnp.asarray(items), **{k: jnp.asarray(v) for k, v in side.items()}))
    want = reference_score(model, raw, user, items, **side, pooling=pooling)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fm_pairwise_term_equals_double_loop():
    """The (sum^2 - sum of squares)/2 identity in `score` on the model's own field embeddings: pairwise = score -
    first order - MLP, against sum_{f<g} <e_f, e_g>."""
    model = make(seed=2)
    user, items = jnp.asarray([4, 900]), jnp.asarray([[10, 1681], [0, 500]])
    side = dict(age=jnp.asarray([20, 60]), gender=jnp.asarray([1, 0]), occupation=jnp.asarray([5, 7]))
    e, w = (np.asarray(x, np.float64) for x in model.fields(user, items, **side))
    assert e.shape == (2, 2, 7, 3) and w.shape == (2, 2, 7)
    brute = np.zeros((2, 2))
    for f in range(7):
        for g in range(f + 1, 7):
            brute += np.sum(e[..., f, :] * e[..., g, :], -1)
    h = jnp.asarray(e.reshape(2, 2, -1), jnp.float32)
    for layer in model.layers:
        h = jax.nn.relu(layer(h))
    deep = np.asarray(model.out(h)[..., 0])
    pairwise = np.asarray(model.score(user, items, **side)) - float(model.global_bias[...]) - w.sum(-1) - deep
    np.testing.assert_allclose(pairwise, brute, rtol=1e-4, atol=1e-5)


def test_shapes_and_score_all_agree():
    model = make(seed=3)
    rng = np.random.default_rng(1)
    user = jnp.asarray(rng.integers(0, NUM_USERS, 5), jnp.int32)
    items = jnp.asarray(rng.integers(0, NUM_ITEMS, (5, 6)), jnp.int32)
    side = dict(age=jnp.full(5, 30), gender=jnp.ones(5, jnp.int32), occupation=jnp.arange(5))
    s = np.asarray(model.score(user, items, **side))
    full = np.asarray(jax.jit(lambda u: model.score_all(u, **side))(user))
    assert s.shape == (5, 6) and s.dtype == np.float32 and full.shape == (5, NUM_ITEMS) and np.isfinite(full).all()
    np.testing.assert_allclose(s, np.take_along_axis(full, np.asarray(items), 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(model(user, item=items[:, 0], **side)), s[:, 0], rtol=1e-5, atol=1e-6)
    assert model.l2(user, items).shape == (5,)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(user=jnp.asarray([NUM_USERS])), f"user id {NUM_USERS} is outside"),
        (dict(items=jnp.asarray([[-1]])), "item id -1 is outside"),
        (dict(items=jnp.asarray([[NUM_ITEMS]])), f"item id {NUM_ITEMS} is outside"),
        (dict(occupation=jnp.asarray([21])), "occupation id 21 is outside"),
        (dict(gender=jnp.asarray([2])), "gender id 2 is outside"),
    ],
)
def test_bad_ids_raise_naming_the_field(change, message):
    model = make()
    args = dict(user=jnp.asarray([0]), items=jnp.asarray([[0]]), age=jnp.asarray([30]), gender=jnp.asarray([0]),
                occupation=jnp.asarray([1])) | change  # fmt: skip
    with pytest.raises(ValueError, match=message):
        model.score(**args)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(pooling="max"), "pooling='max'"),
        (dict(catalogue="amazon"), "catalogue='amazon'"),
        (dict(mlp_dims=()), "mlp_dims"),
        (dict(dropout=1.0), "dropout=1.0"),
    ],
)
def test_bad_options_raise(kw, message):
    with pytest.raises(ValueError, match=message):
        make(**kw)
