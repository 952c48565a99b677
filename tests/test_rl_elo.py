"""Elo fit (`jaxdl.rl.elo`): for two players the fitted difference is the closed form 400 log10(score / (1 - score))
(draws as half points); expected results generated from known ratings give those ratings back; bad input fails
naming it."""

import numpy as np
import pytest

from jaxdl.rl import elo


def test_two_players_closed_form():
    wins = np.array([[0, 700], [100, 0]], float)
    draws = np.array([[0, 200], [200, 0]], float)
    r = elo.fit(["a", "b"], wins, draws, anchor="b")
    assert r["b"] == 0.0
    assert abs(r["a"] - 400 * np.log10(0.8 / 0.2)) < 1.0  # 240.8


def test_recovers_generating_ratings():
    true = np.array([0.0, 150.0, 420.0, -300.0])
    p = 1 / (1 + 10 ** ((true[None, :] - true[:, None]) / 400))  # P(i beats j)
    n = 2000.0
    wins = n * p * (1 - np.eye(4))
    r = elo.fit(["w", "x", "y", "z"], wins)
    np.testing.assert_allclose([r[k] for k in "wxyz"], true, atol=2.0)


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        elo.fit(["a", "b", "c"], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="anchor 'q'"):
        elo.fit(["a", "b"], np.ones((2, 2)), anchor="q")
    with pytest.raises(ValueError, match="symmetric"):
        elo.fit(["a", "b"], np.ones((2, 2)), draws=np.array([[0, 1], [2, 0]]))
