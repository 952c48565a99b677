"""Recommenders at scale: the two-tower model trained by the trainer's own step (`jaxdl.state.compile_train_step`)
with its id tables split row-wise over 8 simulated devices equals the same steps on 1 device; the Zipf
interaction generator (`jaxdl.data.zipf_interactions`) draws what its closed form says."""

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from jaxdl import config as config_lib
from jaxdl import models, state, tasks
from jaxdl.data import zipf_interactions as zipf
from jaxdl.parallel import rules as rules_lib
from jaxdl.parallel.mesh import make_mesh


@pytest.fixture(scope="module")
def loo_rows():
    """The first 4 x 64 leave-one-out train rows of MovieLens-100k as two-tower batches (user, positive item,
    history [50], age, gender, occupation)."""
    from jaxdl.data import movielens as ml

    try:
        ml.raw_dir()
    except FileNotFoundError as e:
        pytest.skip(f"MovieLens-100k is not installed: {e}")
    raw = ml.load_raw()
    train, _, _ = ml.leave_one_out(raw)
    rows = train[np.random.default_rng(0).permutation(len(train))[:256]]
    hist = ml.histories(raw)[rows]
    u = raw.user[rows]
    return [
        {
            "input": u[s],
            "label": raw.item[rows][s],
            "history": hist[s],
            "age": raw.age[u][s],
            "gender": raw.gender[u][s],
            "occupation": raw.occupation[u][s],
        }  # fmt: skip
        for s in (slice(k * 64, (k + 1) * 64) for k in range(4))
    ]


def _train(batches, devices, rules):
    """(per-step losses, final params) of the trainer's step (Adam 1e-2, in-batch softmax) on a mesh over
    `devices`, the state laid out by `rules` as the trainer lays it out.

    Adam's eps is 1e-6, not 1e-8: Adam divides each element's update by that element's own gradient scale, so an
    element whose gradient cancels to ~eps (seen: 2 rows of `history_item`, |g| ~ 1e-8) turns float32
    reduction-order noise into an O(lr) difference (4e-5 after one step with eps 1e-8; 2e-5 after 4 steps with
    eps 1e-6, while the one-step gradients of 1 and 8 devices differ by <= 5e-7 of their largest element). That
    is Adam's conditioning, not the layout under test, so the test bounds each tensor's normwise relative error
    ||p8 - p1|| / ||p1|| <= 1e-5 (a per-element bound would test those few elements' float noise)."""
    c = config_lib.base()
    c.optim.name, c.optim.lr, c.optim.eps = "adam", 1e-2, 1e-6
    c.task = ml_collections.ConfigDict(dict(name="ranking", loss="in_batch"))
    c.model = ml_collections.ConfigDict(dict(name="two_tower", num_users=943, dim=16, row_multiple=8))
    task = tasks.make(c.task)
    mesh = make_mesh({"data": len(devices)}, devices)
    with nnx.use_eager_sharding(False):
        model = models.make(c.model, input_shape=(), num_classes=1682, rngs=nnx.Rngs(params=0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx, schedule = state.make_optimizers(c, task)
    s = dict(params=params, rest=rest, opt_state=tx.init(params), step=np.zeros((), np.int32),
             rng=jax.random.key_data(jax.random.key(0)))  # fmt: skip
    sharding = rules_lib.tree_shardings(s, mesh, rules)
    s = jax.device_put(s, sharding)
    step = state.compile_train_step(c, graphdef, tx, schedule, mesh, rules, sharding, task)
    losses = []
    for b in batches:
        s, metrics = step(s, jax.device_put(b, rules_lib.batch_sharding(mesh, rules)))
        losses.append(float(metrics["loss"]))
    return losses, s["params"]


def test_two_tower_on_8_devices_with_row_sharded_tables_equals_1_device(loo_rows):
    rules = rules_lib.resolve("dp", (("vocab", "data"),))
    losses1, p1 = _train(loo_rows, jax.devices()[:1], rules)
    losses8, p8 = _train(loo_rows, jax.devices()[:8], rules)
    assert losses1[-1] < losses1[0]  # the steps did train
    np.testing.assert_allclose(losses8, losses1, rtol=1e-5)
    for (path, a), (_, b) in zip(jax.tree.leaves_with_path(p8), jax.tree.leaves_with_path(p1), strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        # normwise relative error per tensor (see _train on why single Adam elements may move by more)
        assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(b), (jax.tree_util.keystr(path), np.abs(a - b).max())
    # the id tables really are split by rows over the 8 devices (1682 items padded to 1688, 943 users to 944)
    # (and the side-feature tables too: age 10 -> 16, gender 2 -> 8, occupation 21 -> 24, year 18 -> 24 rows)
    for name, rows in (("item_id", 1688), ("history_item", 1688), ("user_id", 944), ("occupation", 24), ("gender", 8)):
        table = p8[name].get_value()
        assert table.shape[0] == rows and table.sharding.spec[0] == "data", name
        assert {sh.data.shape for sh in table.addressable_shards} == {(rows // 8, table.shape[1])}, name


def test_zipf_sampler_draws_the_closed_form_distribution():
    n, s = 50, 1.1
    sampler = zipf.ZipfSampler(n, s, seed=3)
    p = sampler.probs()
    expected = 1.0 / np.arange(1, n + 1) ** s / np.sum(1.0 / np.arange(1, n + 1) ** s)  # by popularity rank
    np.testing.assert_allclose(p[sampler.perm], expected, rtol=1e-12)
    assert sorted(sampler.perm.tolist()) == list(range(n))  # ranks map to distinct ids
    draws = sampler.sample(np.random.default_rng(0), 200_000)
    assert draws.dtype == np.int32 and draws.min() >= 0 and draws.max() < n
    freq = np.bincount(draws, minlength=n) / len(draws)
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / len(draws))), np.max(np.abs(freq - p))
    users, items = zipf.interactions(1000, n, 5000, exponent=s, seed=3)
    assert users.shape == items.shape == (5000,) and users.max() < 1000
    np.testing.assert_array_equal(items, zipf.interactions(1000, n, 5000, exponent=s, seed=3)[1])  # seeded


def test_zipf_sequences_follow_the_successor_map_at_the_given_rate():
    n, follow = 30, 0.7
    seqs = zipf.sequences(4000, n, 6, follow=follow, exponent=1.0, seed=1)
    succ = zipf.successors(n, seed=1)
    hits = seqs[:, 1:] == succ[seqs[:, :-1]]
    # a fresh draw can also land on the successor: P(hit) = follow + (1 - follow) E[p(succ(prev))]
    p = zipf.ZipfSampler(n, 1.0, seed=1).probs()
    expected = follow + (1 - follow) * np.mean(p[succ[seqs[:, :-1]]])
    assert abs(hits.mean() - expected) < 4 * np.sqrt(expected * (1 - expected) / hits.size), (hits.mean(), expected)
    np.testing.assert_array_equal(zipf.sequences(50, n, 6, follow=1.0, seed=1)[:, 1:],
                                  succ[zipf.sequences(50, n, 6, follow=1.0, seed=1)[:, :-1]])  # fmt: skip
    with pytest.raises(ValueError, match="follow=1.5"):
        zipf.sequences(5, n, 6, follow=1.5)
