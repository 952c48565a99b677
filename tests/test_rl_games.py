"""Board-game players against independent references: our tic-tac-toe minimax table equals a separate brute-force
game-tree search on every reachable position; the minimax player, playing pgx's rules, never loses to a random
player and draws against itself; mctx search with uniform priors and random-playout values (plain MCTS) puts most
visits on the winning move of a position with a forced win, and blocks the opponent's immediate win."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.rl import games


def _brute_value(board: str, me: str) -> int:
    """Result for `me` to move on `board` (9 chars of 'X', 'O', '.') under perfect play, by full tree search."""
    other = "O" if me == "X" else "X"
    lines = [board[a] + board[b] + board[c] for a, b, c in games.LINES]
    if other * 3 in lines:
        return -1
    if "." not in board:
        return 0
    return max(-_brute_value(board[:i] + me + board[i + 1 :], other) for i in range(9) if board[i] == ".")


def test_minimax_table_equals_brute_force_on_every_reachable_position():
    value, q = games.minimax_tables()
    brute = functools.cache(_brute_value)
    seen, frontier = set(), [("." * 9, "X")]
    while frontier:  # every position reachable from the empty board, with its mover
        board, me = frontier.pop()
        if (board, me) in seen:
            continue
        seen.add((board, me))
        other = "O" if me == "X" else "X"
        lines = [board[a] + board[b] + board[c] for a, b, c in games.LINES]
        if other * 3 in lines or "." not in board:
            continue
        code = sum((0 if c == "." else 1 if c == me else 2) * 3**i for i, c in enumerate(board))
        assert value[code] == brute(board, me), board
        for i in range(9):
            if board[i] == ".":
                after = board[:i] + me + board[i + 1 :]
                won = me * 3 in [after[a] + after[b] + after[c] for a, b, c in games.LINES]
                assert q[code, i] == (1 if won else -brute(after, other)), (board, i)
                frontier.append((after, other))
    assert len(seen) == 5478 and value[0] == 0  # all tic-tac-toe positions; perfect play draws


def test_minimax_never_loses_on_pgx_and_draws_against_itself():
    env = games.make("tic_tac_toe")
    run = jax.jit(lambda f, s, k: games.play(env, f, s, k, 400), static_argnums=(0, 1))
    as_first = np.asarray(run(games.minimax_policy, games.random_policy, jax.random.key(0)))
    as_second = -np.asarray(run(games.random_policy, games.minimax_policy, jax.random.key(1)))
    assert (as_first >= 0).all() and (as_second >= 0).all()
    assert as_first.mean() > 0.9 and as_second.mean() > 0.6  # it also wins most games against a random player
    np.testing.assert_array_equal(np.asarray(run(games.minimax_policy, games.minimax_policy, jax.random.key(2))), 0)
    with pytest.raises(ValueError, match="game 'tictactoe' is not a pgx environment; available: .*tic_tac_toe"):
        games.make("tictactoe")


@pytest.mark.parametrize("gumbel", [False, True])
def test_plain_mcts_finds_the_forced_win_and_blocks(gumbel):
    env = games.make("tic_tac_toe")
    state = jax.vmap(env.init)(jax.random.split(jax.random.key(0), 2))
    # game 0: X 0, O 3, X 1, O 4 -> X to move wins at 2 (O threatens 5);  game 1: X 0, O 3, X 8, O 4 -> X must block 5
    for moves in ([0, 0], [3, 3], [1, 8], [4, 4]):
        state = jax.vmap(env.step)(state, jnp.asarray(moves, jnp.int32))
    evaluate = games.rollout_evaluator(env, max_moves=9)
    out = jax.jit(lambda s, k: games.search(env, evaluate, s, k, 64, gumbel))(state, jax.random.key(1))
    weights = np.asarray(out.action_weights)
    assert int(np.argmax(weights[0])) == 2 and weights[0, 2] > 0.5, weights[0]
    if not gumbel:  # the most visited move blocks; Gumbel's improved policy at 64 simulations need not
        assert int(np.argmax(weights[1])) == 5, weights[1]
    assert weights[0, [0, 1, 3, 4]].sum() == 0  # occupied cells are never searched
