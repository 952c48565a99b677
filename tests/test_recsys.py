"""Recommender metrics against hand-computed cases and sklearn, MF that learns (beats the item-mean and popularity
baselines computed here), and MF training on 8 devices with row-sharded tables equal to 1 device within 1e-5.

MovieLens arrays come from `jaxdl.data.movielens.load_raw` (no TFDS build); the trainer + evaluator run on the
built `movielens_loo` lives in tests/test_recsys_train.py."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from sklearn.metrics import mean_absolute_error, mean_squared_error, ndcg_score

from jaxdl import models, tasks
from jaxdl.evaluators import _recsys_metrics as M
from jaxdl.parallel import rules as rules_lib
from jaxdl.parallel.mesh import make_mesh
from jaxdl.parallel.rules import activation_rules


# ------------------------------------------------------------------------------------------------ metrics
def test_ranks_hand_computed():
    scores = np.array(
        [
            [0.9, 0.1, 0.5, 0.3],  # positive col 0 is best: rank 0
            [0.2, 0.8, 0.5, 0.9],  # positive col 0 is last: rank 3
            [0.5, 0.5, 0.1, 0.7],  # a tie with col 1 counts against it: rank 2
            [0.4, 0.6, 0.7, 0.1],  # col 1 and 2 higher but col 2 is masked out: rank 1
        ]
    )
    valid = np.ones_like(scores, bool)
    valid[3, 2] = False
    r = M.ranks(scores, np.zeros(4, int), valid)
    assert r.tolist() == [0, 3, 2, 1]
    assert M.hit_rate(r, 2).tolist() == [1, 0, 0, 1]
    np.testing.assert_allclose(M.ndcg(r, 3), [1, 0, 0.5, 1 / np.log2(3)])
    np.testing.assert_allclose(M.mrr(r), [1, 1 / 4, 1 / 3, 1 / 2])
    # the positive's own column is ranked even when `valid` marks it out
    assert M.ranks(np.array([[0.1, 0.9]]), np.array([1]), np.array([[True, False]])).tolist() == [0]
    assert M.top_k(scores, 2, valid).tolist() == [[0, 2], [3, 1], [3, 0], [1, 0]]
    assert M.coverage(np.array([[0, 2], [3, 1], [3, 0]]), 8) == 4 / 8
    with pytest.raises(ValueError, match="NaN"):
        M.ranks(np.array([[np.nan, 1.0]]), np.array([0]))


def test_ndcg_and_errors_match_sklearn():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 30))
    pos = rng.integers(0, 30, 50)
    relevance = np.zeros_like(scores)
    relevance[np.arange(50), pos] = 1
    r = M.ranks(scores, pos)
    for k in (1, 5, 10, 30):
        assert M.ndcg(r, k).mean() == pytest.approx(ndcg_score(relevance, scores, k=k), abs=1e-12)
    pred, target = rng.normal(size=100), rng.normal(size=100)
    assert M.rmse(pred, target) == pytest.approx(mean_squared_error(target, pred) ** 0.5)
    assert M.mae(pred, target) == pytest.approx(mean_absolute_error(target, pred))


# ------------------------------------------------------------------------------------------ MF on the data
@pytest.fixture(scope="module")
def raw(movielens_raw):
    return movielens_raw


def _mf(num_items=1682, **kw):
    cfg = ml_collections.ConfigDict(dict(name="mf", num_users=943, dim=16, global_mean=3.53, **kw))
    with nnx.use_eager_sharding(False):
        return models.make(cfg, input_shape=(), num_classes=num_items, rngs=nnx.Rngs(params=0))


def _batch(raw, rows):
    return {"input": raw.user[rows], "item": raw.item[rows], "label": raw.rating[rows]}


def _train(model, raw, rows, steps, batch_size, mesh=None, rules=(), lr=1e-2):
    """`steps` Adam steps of the rating task's loss on batches of `rows` (fixed order); returns the params."""
    task = tasks.make({"name": "rating", "reg": 0.05})
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(lr)
    opt = tx.init(params)

    def step(params, opt, batch):
        def loss(p):
            with activation_rules(mesh, rules) if mesh is not None else _null():
                return task.loss(nnx.merge(graphdef, p, rest, copy=True), batch, nnx.Rngs(0))[0]

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, value

    if mesh is not None:
        shard = rules_lib.tree_shardings(params, mesh, rules)
        opt_shard = rules_lib.tree_shardings(opt, mesh, rules)
        bs = rules_lib.batch_sharding(mesh, rules)
        params, opt = jax.device_put(params, shard), jax.device_put(opt, opt_shard)
        step = jax.jit(step, in_shardings=(shard, opt_shard, bs), out_shardings=(shard, opt_shard, None))
    else:
        step = jax.jit(step)
    losses = []
    for s in range(steps):
        b = _batch(raw, rows[(s * batch_size) % len(rows) :][:batch_size])
        params, opt, value = step(params, opt, jax.tree.map(jnp.asarray, b) if mesh is None else b)
        losses.append(float(value))
    return params, rest, graphdef, losses


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def test_mf_learns_ratings_beyond_the_item_mean_baseline(raw):
    from jaxdl.data import movielens as ml

    train, test = ml.rating_fold(raw, 1)
    train = train[np.random.default_rng(0).permutation(len(train))]
    params, rest, graphdef, _ = _train(_mf(), raw, train, steps=1200, batch_size=1000)
    model = nnx.merge(graphdef, params, rest)
    pred = np.clip(np.asarray(model(jnp.asarray(raw.user[test]), item=jnp.asarray(raw.item[test]))), 1, 5)
    rmse = M.rmse(pred, raw.rating[test])
    # baselines from the same fold: global mean, and each item's train mean (global mean for unseen items)
    mu = raw.rating[train].mean()
    sums = np.bincount(raw.item[train], raw.rating[train], 1682)
    counts = np.bincount(raw.item[train], minlength=1682)
    item_mean = np.where(counts > 0, sums / np.maximum(counts, 1), mu)
    global_rmse = M.rmse(np.full(len(test), mu), raw.rating[test])
    item_rmse = M.rmse(item_mean[raw.item[test]], raw.rating[test])
    assert rmse < item_rmse - 0.04 < global_rmse, (rmse, item_rmse, global_rmse)


def test_mf_on_8_devices_with_row_sharded_tables_equals_1_device(raw):
    rows = np.arange(4 * 256)
    rules = rules_lib.resolve("dp", (("vocab", "data"),))
    one = make_mesh({"data": 1}, jax.devices()[:1])
    eight = make_mesh({"data": 8}, jax.devices()[:8])
    p1, *_, losses1 = _train(_mf(row_multiple=8), raw, rows, 4, 256, one, rules)
    p8, *_, losses8 = _train(_mf(row_multiple=8), raw, rows, 4, 256, eight, rules)
    np.testing.assert_allclose(losses8, losses1, rtol=1e-5)
    for (path, a), (_, b) in zip(jax.tree.leaves_with_path(p8), jax.tree.leaves_with_path(p1), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert np.max(np.abs(a - b)) <= 1e-5 * max(np.max(np.abs(b)), 1e-30), jax.tree_util.keystr(path)
    # the tables really are split by rows: each device holds 1/8 of the (padded) user and item rows
    assert p8["user_emb"].value.sharding.spec[0] == "data" and p8["item_emb"].value.sharding.spec[0] == "data"
    assert p8["item_emb"].value.shape == (1688, 16)  # 1682 rows padded to a multiple of 8
    assert p8["item_emb"].value.addressable_shards[0].data.shape == (211, 16)
    assert isinstance(p8["user_emb"].value.sharding, NamedSharding) and p8["user_emb"].value.sharding.num_devices == 8


# ------------------------------------------------------------------------------------- model interface
@pytest.mark.parametrize(
    "name, kw",
    [
        ("mf", dict(dim=8)),
        ("mf", dict(dim=8, biases=False)),
        ("neumf", dict(gmf_dim=4, mlp_dims=(8, 4))),
        ("sasrec", dict(dim=8, depth=1, heads=2, mlp_dim=16, max_len=6, dropout=0.0)),
    ],
)
def test_score_score_all_and_call_agree(name, kw):
    """score(user, items) == score_all(user)[items] == model(user, item=...) for every recommender; SASRec's
    score depends only on the history (user-id free, and later history items matter)."""
    cfg = ml_collections.ConfigDict(dict(name=name, num_users=7, **kw))
    with nnx.use_eager_sharding(False):
        model = models.make(cfg, input_shape=(), num_classes=11, rngs=nnx.Rngs(params=1))
    rng = np.random.default_rng(0)
    user = jnp.asarray(rng.integers(0, 7, 5), jnp.int32)
    items = jnp.asarray(rng.integers(0, 11, (5, 3)), jnp.int32)
    history = jnp.asarray(np.where(rng.random((5, 6)) < 0.3, -1, rng.integers(0, 11, (5, 6))), jnp.int32)
    s = np.asarray(model.score(user, items, history=history))
    full = np.asarray(model.score_all(user, history=history))
    assert full.shape == (5, 11) and np.isfinite(full).all()
    np.testing.assert_allclose(s, np.take_along_axis(full, np.asarray(items), 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model(user, item=items[:, 0], history=history)), s[:, 0], rtol=1e-5)
    if name == "sasrec":
        np.testing.assert_array_equal(np.asarray(model.score_all((user + 1) % 7, history=history)), full)
        changed = history.at[:, -1].set((history[:, -1] + 1) % 11)
        assert not np.allclose(np.asarray(model.score_all(user, history=changed)), full)


def test_in_batch_loss_with_logq_matches_a_hand_computation(raw):
    """The ranking task's "in_batch" loss = mean_b -log softmax_j(<f(u_b), g(i_j)>/T - log(B p_j))[b] over the
    columns j whose item differs from row b's positive (accidental hits removed), p = train item frequencies."""
    counts = np.bincount(raw.item, minlength=1682)
    cfg = ml_collections.ConfigDict(dict(name="two_tower", num_users=943, dim=8))
    with nnx.use_eager_sharding(False):
        model = models.make(cfg, input_shape=(), num_classes=1682, rngs=nnx.Rngs(params=0), label_counts=lambda: counts)
    rows = np.array([0, 1, 2, 3, 4, 5])
    items = raw.item[rows].copy()
    items[5] = items[0]  # an accidental hit between rows 0 and 5
    batch = {
        "input": jnp.asarray(raw.user[rows]),
        "label": jnp.asarray(items),
        "history": jnp.asarray(np.full((6, 3), -1, np.int32)),
        "age": jnp.asarray(raw.age[raw.user[rows]]),
        "gender": jnp.asarray(raw.gender[raw.user[rows]]),
        "occupation": jnp.asarray(raw.occupation[raw.user[rows]]),
    }
    loss, _ = tasks.make({"name": "ranking", "loss": "in_batch"}).loss(model, batch, nnx.Rngs(0))
    inputs = {k: batch[k] for k in ("history", "age", "gender", "occupation")}
    u = np.asarray(model.user_vectors(batch["input"], **inputs), np.float64)
    v = np.asarray(model.item_vectors(batch["label"]), np.float64)
    p = (counts + 1e-3) / (counts + 1e-3).sum()
    expect = []
    for b in range(6):
        cols = [j for j in range(6) if j == b or items[j] != items[b]]
        logits = np.array([u[b] @ v[j] / 0.05 - np.log(6 * p[items[j]]) for j in cols])
        expect.append(-(logits[cols.index(b)] - np.log(np.sum(np.exp(logits)))))
    assert float(loss) == pytest.approx(np.mean(expect), rel=1e-5)
