"""AlphaZero self-play (`jaxdl.tasks.alphazero`): the recorded training targets against the games themselves. The
random opening moves are not trained on; every recorded position's search policy is a distribution over its legal
moves only; the value target of each position is
the final result for its mover, recomputed here from the last board with our own line check (win +1, loss -1, draw
0); positions after a game's end are marked invalid; the ring buffer holds them in order; a bad game / model fails
before compiling."""

import jax
import numpy as np
import pytest
from flax import nnx

from jaxdl import config as config_lib
from jaxdl import models, tasks
from jaxdl.rl import games


def test_self_play_targets_are_the_games_results():
    task = tasks.make(
        dict(name="alphazero", num_games=6, num_simulations=4, buffer_size=64, selfplay_every=2, random_opening=2)
    )
    with nnx.use_eager_sharding(False):
        model = models.make({"name": "policy_value_net", "channels": 8, "blocks": 1}, input_shape=task.obs_shape,
                            num_classes=9, rngs=nnx.Rngs(0))  # fmt: skip
    carry = task.init_carry(jax.random.key(0), model)
    batch, carry = jax.jit(lambda c, k: task.make_batch(model, c, k))(carry, jax.random.key(1))
    assert int(carry["games"]) == 6 and int(carry["write"]) == 54 and int(carry["t"]) == 1
    obs, pol = np.asarray(carry["obs"][:54]).reshape(9, 6, 3, 3, 2), np.asarray(carry["policy"][:54]).reshape(9, 6, 9)
    res, valid = np.asarray(carry["result"][:54]).reshape(9, 6), np.asarray(carry["valid"][:54]).reshape(9, 6)
    assert not np.asarray(carry["valid"][54:]).any()
    openings = set()
    for g in range(6):
        idx = np.flatnonzero(valid[:, g])  # searched moves: after 0..2 random opening moves, until the game ends
        first, n = int(idx[0]), int(idx[-1]) + 1
        openings.add(first)
        assert first <= 2 and 5 <= n <= 9 and (idx == np.arange(first, n)).all()  # a game is 5..9 moves
        for t in range(first, n):
            mine, theirs = obs[t, g, ..., 0].reshape(9), obs[t, g, ..., 1].reshape(9)
            legal = ~(mine | theirs)
            np.testing.assert_allclose(pol[t, g].sum(), 1.0, rtol=1e-5)
            assert (pol[t, g][~legal] == 0).all()
        # the final result from the last mover's side: the board after its move (its marks + the move it made)
        last_mine, last_theirs = obs[n - 1, g, ..., 0].reshape(9), obs[n - 1, g, ..., 1].reshape(9)
        full = (last_mine | last_theirs).sum() == 8
        won_lines = [any(all(b[i] for i in line) for line in games.LINES) for b in (last_mine, last_theirs)]
        assert not any(won_lines)  # nobody had won before the last move
        want = res[n - 1, g]
        assert want in (0.0, 1.0)  # the last mover wins or, on a full board, draws
        assert want == 1.0 or (full and n == 9)
        if n < 9:  # the recorded (untrained) position after the end: the last mover's marks hold a line iff it won
            final = obs[n, g, ..., 1].reshape(9)
            assert any(all(final[i] for i in line) for line in games.LINES) == (want == 1.0)
        for t in range(first, n - 1):  # earlier positions: the result alternates with the mover
            assert res[t, g] == want * (-1) ** (n - 1 - t)
    assert len(openings) > 1  # the random openings vary between games
    # the training batch is drawn from the valid entries only
    assert np.asarray(batch["valid"]).all() and batch["obs"].shape == (128, 3, 3, 2)


def test_bad_game_and_model_fail_before_compiling():
    c = config_lib.base()
    c.task = dict(name="alphazero", game="tictactoe")
    c.model = dict(name="policy_value_net")
    with pytest.raises(ValueError, match="game 'tictactoe' is not a pgx environment"):
        config_lib.validate(c)
    c.task = dict(name="alphazero")
    c.model = dict(name="actor_critic")
    with pytest.raises(ValueError, match="'actor_critic' is not a policy-value network"):
        config_lib.validate(c)
    c.model = dict(name="policy_value_net")
    c.evals.main = dict(kind="games", opponents="random,alphabeta")
    config_lib.validate(c)  # options are checked when the evaluator is built (before any compile), below
    from jaxdl.evaluators import games as games_eval

    class Ctx:
        config, task, graphdef = c, tasks.make(c.task), None

    with pytest.raises(ValueError, match="'alphabeta' is not one of"):
        games_eval.Evaluator(Ctx, opponents="random,alphabeta", every=0)


def test_resume_is_bitwise(tmp_path):
    """An AlphaZero run stopped at step 3 (inside a self-play interval) and resumed equals the uninterrupted run:
    parameters, optimizer state, replay buffer, RNG, logged losses and the final evaluation."""
    from jaxdl import state as state_lib
    from jaxdl.metrics import read_metrics
    from jaxdl.train import train_and_evaluate

    def cfg(steps):
        c = config_lib.base()
        c.task = dict(name="alphazero", num_games=4, num_simulations=2, selfplay_every=2, buffer_size=72,
                      batch_size=16, random_opening=1)  # fmt: skip
        c.model = dict(name="policy_value_net", channels=4, blocks=1, value_hidden=4)
        c.optim.name, c.optim.lr = "adam", 1e-3
        c.train.steps, c.train.log_every, c.train.progress = steps, 1, False
        c.train.eval_every, c.train.checkpoint_every, c.train.async_checkpoints = 0, 3, False
        c.evals.main = dict(kind="games", games=2, opponents="policy_random")  # no search: a cheap compile
        return c

    one = jax.devices()[:1]
    full = train_and_evaluate(cfg(6), str(tmp_path / "full"), devices=one)
    train_and_evaluate(cfg(3), str(tmp_path / "split"), devices=one)
    resumed = train_and_evaluate(cfg(6), str(tmp_path / "split"), devices=one)
    assert full == resumed
    get = lambda wd: jax.tree.map(np.asarray, state_lib.restore_run(str(wd), None, one).state)
    a, b = get(tmp_path / "full"), get(tmp_path / "split")
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert int(a["carry"]["games"]) == 4 * 3  # self-play at steps 0, 2, 4
    losses = lambda wd: [r["train/loss"] for r in read_metrics(str(wd)) if "train/loss" in r]
    assert losses(tmp_path / "full") == losses(tmp_path / "split")[-6:]
