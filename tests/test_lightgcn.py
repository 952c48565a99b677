"""LightGCN (jaxdl/models/recsys/lightgcn.py): scores equal a dense normalized-adjacency LightGCN on a small random
bipartite graph, the MovieLens-100k graph holds exactly the leave-one-out train rows (no validation / test
interaction), BPR through the ranking task reaches every embedding, and ids past the tables fail clearly."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import models, tasks
from jaxdl.models.recsys import lightgcn


def _model(graph, num_users, num_items, layers=3, dim=8, seed=0):
    with nnx.use_eager_sharding(False):
        return models.make(
            dict(name="lightgcn", num_users=num_users, dim=dim, layers=layers, graph=graph),
            input_shape=(),
            num_classes=num_items,
            rngs=nnx.Rngs(seed),
        )


def _random_bipartite(rng, num_users, num_items, density=0.3):
    r = rng.random((num_users, num_items)) < density
    r[0, :] = False  # a user and an item without edges (degree 0: their propagated rows are 0 after layer 0)
    r[:, 1] = False
    users, items = np.nonzero(r)
    perm = rng.permutation(len(users))  # edge order must not matter
    return r, users[perm], items[perm]


def _dense_lightgcn(r: np.ndarray, e0: np.ndarray, layers: int) -> np.ndarray:
    """mean_k Â^k e0 with Â = D^-1/2 [[0, R], [R^T, 0]] D^-1/2 (float64)."""
    nu, ni = r.shape
    a = np.zeros((nu + ni, nu + ni))
    a[:nu, nu:], a[nu:, :nu] = r, r.T
    deg = a.sum(1)
    inv = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1)), 0.0)
    a_hat = inv[:, None] * a * inv[None, :]
    out, h = e0.astype(np.float64), e0.astype(np.float64)
    for _ in range(layers):
        h = a_hat @ h
        out = out + h
    return out / (layers + 1)


@pytest.mark.parametrize("layers", [0, 1, 3])
def test_scores_equal_dense_adjacency(layers):
    rng = np.random.default_rng(layers)
    nu, ni = 7, 11
    r, users, items = _random_bipartite(rng, nu, ni)
    model = _model((users, items), nu, ni, layers=layers)
    e0 = np.concatenate([np.asarray(model.user_emb[...]), np.asarray(model.item_emb[...])])
    dense = _dense_lightgcn(r, e0, layers)
    want_all = dense[:nu] @ dense[nu:].T  # [users, items]
    user = jnp.arange(nu, dtype=jnp.int32)
    np.testing.assert_allclose(model.score_all(user), want_all, rtol=1e-5, atol=1e-6)
    cand = jnp.asarray(rng.integers(0, ni, (nu, 4)), jnp.int32)
    np.testing.assert_allclose(
        model.score(user, cand), np.take_along_axis(want_all, np.asarray(cand), 1), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(model(user, item=cand[:, 0]), want_all[np.arange(nu), np.asarray(cand[:, 0])], 1e-5)
    # jitted (the trainer's path: ids are tracers, edges are state) gives the same scores
    np.testing.assert_allclose(nnx.jit(lambda m, u: m.score_all(u))(model, user), want_all, rtol=1e-5, atol=1e-6)


def test_bpr_through_ranking_task_reaches_all_layers():
    rng = np.random.default_rng(0)
    nu, ni = 6, 9
    _, users, items = _random_bipartite(rng, nu, ni, 0.5)
    model = _model((users, items), nu, ni)
    task = tasks.make(dict(name="ranking", loss="bpr", reg=1e-3))
    batch = {"input": jnp.array([2, 3], jnp.int32), "label": jnp.array([4, 5], jnp.int32)}
    grad_fn = nnx.jit(nnx.value_and_grad(lambda m, rngs: task.loss(m, batch, rngs), has_aux=True))
    (loss, metrics), grads = grad_fn(model, nnx.Rngs(sampling=0))
    assert np.isfinite(float(loss)) and "pair_accuracy" in metrics
    # users outside the batch get gradients through propagation (their embeddings reach the batch's rows within
    # 3 hops); user 0 has no edge, so nothing of it reaches the batch
    g = np.abs(np.asarray(grads.user_emb[...])).sum(1)
    assert g[0] == 0 and np.all(g[1:] > 0), g
    p, q = np.asarray(model.user_emb[...]), np.asarray(model.item_emb[...])
    want = (p[[2, 3]] ** 2).sum(-1) + (q[[[4, 0], [5, 1]]] ** 2).sum((-2, -1))
    np.testing.assert_allclose(model.l2(batch["input"], jnp.array([[4, 0], [5, 1]])), want, rtol=1e-6)


def test_movielens_graph_is_train_split_only():
    from jaxdl.data import movielens as ml

    data = ml.load_raw()
    train, valid, test = ml.leave_one_out(data)
    key = lambda u, i: np.sort(np.asarray(u, np.int64) * ml.NUM_ITEMS + np.asarray(i))  # (user, item) as one int
    users, items = lightgcn.movielens_train_interactions()
    pairs = key(users, items)
    assert len(pairs) == len(np.unique(pairs)) == len(train) == 98_114
    np.testing.assert_array_equal(pairs, key(data.user[train], data.item[train]))
    held_out = np.concatenate([valid, test])
    assert len(np.unique(key(data.user[held_out], data.item[held_out]))) == 2 * 943
    assert not np.isin(key(data.user[held_out], data.item[held_out]), pairs).any()
    # nothing later than a user's validation interaction is in the graph
    last_train_time = np.zeros(ml.NUM_USERS, np.int64)
    np.maximum.at(last_train_time, data.user[train], data.timestamp[train])
    assert np.all(last_train_time[data.user[valid]] <= data.timestamp[valid])

    model = _model("movielens_loo", ml.NUM_USERS, ml.NUM_ITEMS, dim=4)
    s, r = np.asarray(model.senders[...]), np.asarray(model.receivers[...])
    assert model.num_edges == 2 * 98_114
    to_item = s < ml.NUM_USERS
    np.testing.assert_array_equal(key(s[to_item], r[to_item] - ml.NUM_USERS), pairs)
    np.testing.assert_array_equal(key(r[~to_item], s[~to_item] - ml.NUM_USERS), pairs)  # both directions


def test_bad_ids_fail_clearly():
    users, items = np.array([0, 1, 2]), np.array([0, 3, 1])
    with pytest.raises(ValueError, match=r"graph interaction 1: item id 3 is outside the 3 items"):
        _model((users, items), 3, 3)
    with pytest.raises(ValueError, match=r"graph interaction 2: user id 2 is outside the 2 users"):
        _model((users, np.array([0, 1, 1])), 2, 3)
    with pytest.raises(ValueError, match=r"config.model.graph='movielens_test' is not a training graph"):
        _model("movielens_test", 3, 3)
    model = _model((users, np.array([0, 2, 1])), 3, 3)
    with pytest.raises(ValueError, match=r"user id 3 is outside the table of 3 users"):
        model.score_all(jnp.array([0, 3]))
    with pytest.raises(ValueError, match=r"item id 5 is outside the table of 3 items"):
        model.score(jnp.array([0, 1]), jnp.array([[0, 1], [5, 2]]))
    # under jit the ids cannot be inspected: those scores are NaN, the others finite
    s = nnx.jit(lambda m, u, i: m.score(u, i))(model, jnp.array([0, 1]), jnp.array([[0, 1], [5, 2]]))
    assert np.isnan(np.asarray(s)[1, 0]) and np.isfinite(np.asarray(s)[[0, 0, 1], [0, 1, 1]]).all()
