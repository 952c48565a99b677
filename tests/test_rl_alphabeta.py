"""The connect-four alpha-beta player (`jaxdl.rl.alphabeta`): it wins in one when it can and blocks an immediate
loss, on positions reached by pgx's own rules and played through the jitted `policy` (the observation decoding
included); with a depth covering every empty cell its root values equal plain exhaustive minimax (no pruning,
our own line check on a numpy grid, the same win/draw scoring) on random endgame positions; depth 2 beats a
random player."""

import itertools

import jax
import numpy as np
import pytest

from jaxdl.rl import alphabeta as ab
from jaxdl.rl import games


def _pgx_states(*lines):
    """A batch of pgx connect_four states, one per move sequence (all of one length)."""
    env = games.make("connect_four")
    state = jax.vmap(env.init)(jax.random.split(jax.random.key(0), len(lines)))
    step = jax.jit(jax.vmap(env.step))
    for moves in zip(*lines, strict=True):
        state = step(state, np.array(moves, np.int32))
    assert not np.asarray(state.terminated).any()
    return state


def test_wins_in_one_rather_than_blocking_and_blocks_an_immediate_loss():
    state = _pgx_states(
        [0, 4, 1, 5, 2, 6],  # the mover holds columns 0-2 of the bottom row, the other 4-6: it wins at 3
        [0, 4, 0, 5, 1, 6],  # the other holds columns 4-6; the mover (columns 0, 0, 1) has no win: it blocks 3
    )
    for depth in (1, 2, 4):
        act = jax.jit(ab.policy(depth))
        for seed in range(3):
            action = np.asarray(act(state, jax.random.key(seed)))
            assert action[0] == 3, (depth, action)
            if depth >= 2:  # depth 1 does not look at the other's reply
                assert action[1] == 3, (depth, action)
    # once a game is over pgx marks every action legal; the player must not search it (action 0, no error)
    over = jax.jit(jax.vmap(games.make("connect_four").step))(state, np.array([3, 0], np.int32))
    assert np.asarray(over.terminated).tolist() == [True, False]
    assert int(jax.jit(ab.policy(2))(over, jax.random.key(0))[0]) == 0


# ------------------------------------------------------------------------------------------- brute force
def _four(grid: np.ndarray, who: int) -> bool:
    g = grid == who
    h = g[:, :-3] & g[:, 1:-2] & g[:, 2:-1] & g[:, 3:]
    v = g[:-3] & g[1:-2] & g[2:-1] & g[3:]
    d = g[:-3, :-3] & g[1:-2, 1:-2] & g[2:-1, 2:-1] & g[3:, 3:]
    e = g[3:, :-3] & g[2:-1, 1:-2] & g[1:-2, 2:-1] & g[:-3, 3:]
    return bool(h.any() or v.any() or d.any() or e.any())


def _drop(grid: np.ndarray, col: int, who: int) -> np.ndarray:
    out = grid.copy()
    row = int(np.flatnonzero(out[:, col] == 0)[0])  # row 0 = bottom
    out[row, col] = who
    return out


def _brute(grid: np.ndarray, ply: int) -> int:
    """Exact negamax value for the mover (+1 stones) with ab's scoring: WIN - plies for a win, 0 for a draw."""
    values = []
    for c in range(7):
        if grid[-1, c]:
            continue
        after = _drop(grid, c, 1)
        if _four(after, 1):
            values.append(ab.WIN - ply - 1)
        elif after.all():
            values.append(0)
        else:
            values.append(-_brute(-after, ply + 1))
    return max(values)


def _endgame(rng: np.random.Generator, empty: int) -> np.ndarray:
    """A random position with `empty` empty cells reached without a four (mover to play = +1)."""
    while True:
        grid, ok = np.zeros((6, 7), np.int8), True
        for _ in range(42 - empty):
            col = rng.choice(np.flatnonzero(grid[-1] == 0))
            grid = _drop(grid, col, 1)
            if _four(grid, 1):
                ok = False
                break
            grid = -grid  # the other player moves next
        if ok:
            return grid


def _bits(grid: np.ndarray, who: int) -> int:
    return sum(1 << (7 * c + r) for r, c in itertools.product(range(6), range(7)) if grid[r, c] == who)


def test_full_depth_agrees_with_exhaustive_minimax():
    rng = np.random.default_rng(0)
    outcomes = set()
    for _ in range(6):
        grid = _endgame(rng, empty=9)
        me, opp = _bits(grid, 1), _bits(grid, -1)
        exact = {}
        for c in range(7):
            if not grid[-1, c]:
                after = _drop(grid, c, 1)
                if _four(after, 1):
                    exact[c] = ab.WIN - 1
                elif after.all():
                    exact[c] = 0
                else:
                    exact[c] = -_brute(-after, 1)
        best = max(exact.values())
        assert ab.negamax(me, opp, 9, -float("inf"), float("inf")) == best
        got = ab.root_values(me, opp, 9)
        assert got.keys() == exact.keys()
        for c, v in exact.items():  # exact for the best moves, an upper bound for the others
            assert got[c] == v if v == best else got[c] <= best - 1 and got[c] >= v
        assert ab.best_move(me, opp, 9) in [c for c, v in exact.items() if v == best]
        outcomes.add(int(np.sign(best)))
    assert len(outcomes) >= 2  # the positions are not all of one kind


def test_depth_two_beats_random_and_bad_depth_fails():
    env = games.make("connect_four")
    n = 8
    first = games.play(env, ab.policy(2), games.random_policy, jax.random.key(0), n)
    second = -games.play(env, games.random_policy, ab.policy(2), jax.random.key(1), n)
    results = np.concatenate([np.asarray(first), np.asarray(second)])
    assert (results > 0).mean() >= 0.9, results
    with pytest.raises(ValueError, match="depth=0"):
        ab.policy(0)
