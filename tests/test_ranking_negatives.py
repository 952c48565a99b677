"""The ranking task's negatives: "uniform" is the catalogue-wide randint it always was (bitwise); "unseen" never
returns an item of the user's training interactions and is uniform over the rest (chi-square against the uniform
law); on MovieLens' leave-one-out split the seen matrix holds exactly the train rows and leaves every user's
validation and test items unseen; bad configs are named. Skips only the MovieLens part when the recbole package
(which ships the files) is not installed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxdl.tasks.ranking import Task, seen_matrix


def test_uniform_negatives_are_the_catalogue_randint():
    task, key, user = Task(loss="bce", num_negatives=4), jax.random.key(3), jnp.arange(6)
    np.testing.assert_array_equal(task.draw_negatives(key, user, 50), jax.random.randint(key, (6, 4), 0, 50))


def test_unseen_negatives_avoid_the_users_items_and_are_uniform_over_the_rest():
    items = 12
    seen = seen_matrix(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 5, 11, 3, 4, 7]), items)
    assert seen.sum() == 6 and seen[0, 5] and not seen[2, 0]
    task = Task(loss="bpr", num_negatives=2000, negatives="unseen", dataset="unused")
    task._seen = seen  # the matrix a dataset would give
    user = jnp.array([0, 1, 2])
    neg = np.asarray(jax.jit(lambda k: task.draw_negatives(k, user, items))(jax.random.key(0)))
    assert neg.shape == (3, 2000) and neg.dtype == np.int32
    for u in range(3):
        assert not seen[u, neg[u]].any(), u
        unseen = np.flatnonzero(~seen[u])
        counts = np.bincount(neg[u], minlength=items)[unseen]
        assert stats.chisquare(counts).pvalue > 1e-3, (u, counts)


def test_movielens_seen_matrix_is_the_train_split():
    from jaxdl.data import movielens as ml

    try:
        ml.raw_dir()
    except FileNotFoundError as e:
        pytest.skip(f"MovieLens-100k is not installed (bash launch/setup.sh installs recbole): {e}")
    raw = ml.load_raw()
    train, valid, test = ml.leave_one_out(raw)
    task = Task(negatives="unseen", dataset="movielens_loo")
    seen = task.seen(ml.NUM_ITEMS)
    assert seen.shape == (ml.NUM_USERS, ml.NUM_ITEMS) and seen.sum() == len(train) == 98_114
    np.testing.assert_array_equal(
        np.flatnonzero(seen), np.flatnonzero(seen_matrix(raw.user[train], raw.item[train], ml.NUM_ITEMS))
    )
    for rows in (valid, test):
        assert not seen[raw.user[rows], raw.item[rows]].any()


def test_bad_negative_configs_are_named():
    with pytest.raises(ValueError, match="config.task.negatives='popular'"):
        Task(negatives="popular")
    with pytest.raises(ValueError, match="config.task.dataset is required with negatives='unseen'"):
        Task(negatives="unseen")
    with pytest.raises(ValueError, match=r"item ids must lie in \[0, 3\)"):
        seen_matrix(np.array([0]), np.array([3]), 3)
