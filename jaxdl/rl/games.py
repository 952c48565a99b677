"""Two-player board games from pgx, the players the AlphaZero evaluators pit a network against, and MCTS with mctx.

- `make(name)`: a pgx environment (tic_tac_toe, connect_four, ...), an unknown name failing with the list.
- `minimax_tables()`: exact game values of every tic-tac-toe position, by our own exhaustive negamax over the
  3^9 boards (no library solves tic-tac-toe; pgx gives the rules only), so `minimax_policy` never loses.
- `mcts_policy(env, evaluate, ...)`: an mctx search (`muzero_policy` / `gumbel_muzero_policy`) whose model is the
  real game (pgx `step`) and whose leaves are valued by `evaluate(state) -> (prior logits, value)`: a network
  (AlphaZero) or uniform priors with a random-playout value (plain MCTS, `rollout_evaluator`).
- `play(env, first, second, key, num_games, opening)`: batched games between two policies; outcomes for `first`.

Policies map (pgx state batch [n], key) -> action int32 [n]; values are from the player to move's side.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))


def make(name: str):
    """The pgx environment `name` (ValueError listing pgx's games for an unknown one)."""
    import pgx

    if name not in pgx.available_envs():
        raise ValueError(f"game {name!r} is not a pgx environment; available: {', '.join(pgx.available_envs())}")
    return pgx.make(name)


# ------------------------------------------------------------------------------------------- minimax
def _won(board: tuple, who: int) -> bool:
    return any(all(board[i] == who for i in line) for line in LINES)


@functools.cache
def minimax_tables() -> tuple[np.ndarray, np.ndarray]:
    """(value float32 [3^9], q float32 [3^9, 9]) for every board coded from the mover's side (cell i: 0 empty,
    1 the mover's mark, 2 the opponent's; code = sum cell_i 3^i): value = the game's result under perfect play for
    the player to move (+1 win, 0 draw, -1 loss); q[a] = the result of playing `a` (-2 for an occupied cell).
    Unreachable boards keep value 0 and their q."""
    value, q = np.zeros(3**9, np.float32), np.full((3**9, 9), -2.0, np.float32)
    powers = 3 ** np.arange(9)
    memo: dict[tuple, float] = {}

    def solve(board: tuple) -> float:
        if board in memo:
            return memo[board]
        qs = np.full(9, -2.0, np.float32)
        for a in range(9):
            if board[a]:
                continue
            after = board[:a] + (1,) + board[a + 1 :]
            if _won(after, 1):
                qs[a] = 1.0
            elif all(after):
                qs[a] = 0.0
            else:  # the opponent moves next: the same board seen from its side (1 <-> 2)
                qs[a] = -solve(tuple((3 - c) % 3 for c in after))
        code = int(np.dot(board, powers))
        q[code], value[code] = qs, qs.max()
        memo[board] = float(qs.max())
        return memo[board]

    solve((0,) * 9)
    return value, q


def board_code(observation: jax.Array) -> jax.Array:
    """int32 [n] codes of tic-tac-toe observations bool [n, 3, 3, 2] (pgx: plane 0 the mover's marks, 1 the other's)."""
    cells = observation[..., 0].reshape(-1, 9).astype(jnp.int32) + 2 * observation[..., 1].reshape(-1, 9)
    return jnp.sum(cells * (3 ** jnp.arange(9)), axis=-1).astype(jnp.int32)


def minimax_policy(state, key: jax.Array) -> jax.Array:
    """The exact tic-tac-toe player: a uniformly random move among those with the best minimax value."""
    _, q = minimax_tables()
    qs = jnp.asarray(q)[board_code(state.observation)]
    best = (qs == qs.max(-1, keepdims=True)) & state.legal_action_mask
    return jax.random.categorical(key, jnp.where(best, 0.0, -jnp.inf)).astype(jnp.int32)


def random_policy(state, key: jax.Array) -> jax.Array:
    """A uniformly random legal move."""
    return jax.random.categorical(key, jnp.where(state.legal_action_mask, 0.0, -jnp.inf)).astype(jnp.int32)


# ------------------------------------------------------------------------------------------- MCTS
def rollout_evaluator(env, max_moves: int):
    """evaluate(state, key) -> (uniform prior logits [n, A], value [n]) where value is the result, for the player to
    move, of one uniformly random playout (`max_moves` moves at most): plain Monte-Carlo tree search's leaf."""

    def evaluate(state, key):
        mover = state.current_player

        def body(i, c):
            s, k = c
            k, sub = jax.random.split(k)
            live = ~(s.terminated | s.truncated)
            stepped = jax.vmap(env.step)(s, random_policy(s, sub))
            return jax.tree.map(lambda n, o: jnp.where(_bcast(live, n), n, o), stepped, s), k

        end, _ = jax.lax.fori_loop(0, max_moves, body, (state, key))
        value = jnp.take_along_axis(end.rewards, mover[:, None], 1)[:, 0]
        return jnp.zeros(state.legal_action_mask.shape, jnp.float32), value.astype(jnp.float32)

    return evaluate


def _bcast(live: jax.Array, x: jax.Array) -> jax.Array:
    return live.reshape(live.shape + (1,) * (x.ndim - 1))


def search(env, evaluate, state, key: jax.Array, num_simulations: int, gumbel: bool = False, **kwargs):
    """mctx search from the batch of pgx states `state` [n] with the real game as the model: returns mctx's
    PolicyOutput (action int32 [n], action_weights float32 [n, A] = the visit distribution / improved policy).
    `evaluate(state, key) -> (prior logits [n, A], value [n])`, from the mover's side; illegal moves are masked."""
    import mctx

    k_root, k_search = jax.random.split(key)
    logits, value = evaluate(state, k_root)
    root = mctx.RootFnOutput(prior_logits=_masked(logits, state.legal_action_mask), value=value, embedding=state)

    def recurrent_fn(params, rng, action, embedding):
        del params
        mover = embedding.current_player
        nxt = jax.vmap(env.step)(embedding, action)
        logits, value = evaluate(nxt, rng)
        reward = jnp.take_along_axis(nxt.rewards, mover[:, None], 1)[:, 0].astype(jnp.float32)
        over = nxt.terminated | nxt.truncated
        out = mctx.RecurrentFnOutput(
            reward=reward,
            discount=jnp.where(over, 0.0, -1.0).astype(jnp.float32),  # two players: the next value is the other's
            prior_logits=_masked(logits, nxt.legal_action_mask),
            value=jnp.where(over, 0.0, value).astype(jnp.float32),
        )
        return out, nxt

    policy = mctx.gumbel_muzero_policy if gumbel else mctx.muzero_policy
    return policy(
        params=None,
        rng_key=k_search,
        root=root,
        recurrent_fn=recurrent_fn,
        num_simulations=num_simulations,
        invalid_actions=~state.legal_action_mask,
        **kwargs,
    )


def _masked(logits: jax.Array, mask: jax.Array) -> jax.Array:
    logits = logits - jnp.max(logits, axis=-1, keepdims=True)
    return jnp.where(mask, logits, jnp.finfo(logits.dtype).min)


def mcts_policy(env, evaluate, num_simulations: int, gumbel: bool = False):
    """A policy playing the most visited (muzero) / selected (gumbel) root action of `search`."""

    def policy(state, key):
        out = search(env, evaluate, state, key, num_simulations, gumbel)
        if gumbel:
            return out.action.astype(jnp.int32)
        return jnp.argmax(jnp.where(state.legal_action_mask, out.action_weights, -1.0), -1).astype(jnp.int32)

    return policy


# ------------------------------------------------------------------------------------------- matches
MAX_MOVES = {"tic_tac_toe": 9, "connect_four": 42}


def play(
    env, first, second, key: jax.Array, num_games: int, opening: jax.Array | None = None, max_moves: int = 0
) -> jax.Array:
    """float32 [num_games] results for the `first` policy (+1 win, 0 draw, -1 loss): it moves first in every game
    (after `opening`, int32 [num_games] moves made for it, if given). Traceable; `max_moves` (default: the game's
    longest, `MAX_MOVES`) moves are played. Each move computes only the policy whose turn it is (a `lax.cond`),
    which halves the cost of searching players and keeps host-callback players (`alphabeta`) off the other's turn."""
    k_init, k_play = jax.random.split(key)
    state = jax.vmap(env.init)(jax.random.split(k_init, num_games))
    first_player = state.current_player
    if opening is not None:
        state = jax.vmap(env.step)(state, opening.astype(jnp.int32))
    max_moves = max_moves or MAX_MOVES[env.id]

    offset = 0 if opening is None else 1  # the opening move was `first`'s

    def body(i, c):
        s, k = c
        k, ka, kb = jax.random.split(k, 3)
        # all games alternate in step, so one policy moves in every live game: only it is computed
        a = jax.lax.cond((i + offset) % 2 == 0, lambda: first(s, ka), lambda: second(s, kb))
        live = ~(s.terminated | s.truncated)
        stepped = jax.vmap(env.step)(s, a)
        return jax.tree.map(lambda n, o: jnp.where(_bcast(live, n), n, o), stepped, s), k

    end, _ = jax.lax.fori_loop(0, max_moves, body, (state, k_play))
    return jnp.take_along_axis(end.rewards, first_player[:, None], 1)[:, 0].astype(jnp.float32)
