"""A depth-limited alpha-beta (negamax) player for connect four: the "exact player within its search depth" that the
`games` evaluator pits AlphaZero against.

Why plain Python on bitboards, not JAX: alpha-beta's value is its pruning, which is data-dependent recursion (a
cut-off skips the rest of a subtree); under jit every branch would be computed anyway (a full 7^d tree). With two
63-bit integers per position (Pascal Pons' layout) a node costs a few microseconds, so depth 4 (<= 2,800 nodes) takes
milliseconds per move. `policy(depth)` calls it from jitted code through `jax.pure_callback`.

Board: bit `7 * column + row` (row 0 at the bottom; a seventh, always-empty row per column stops the shifts of
`won` from wrapping). `me`/`opp` are the mover's and the other player's stones.

Scores (from the mover's side, integers): a win `WIN - plies` (plies from the searched root to the winning move,
so faster wins score higher and slower losses less badly), a full board 0, and at depth 0 the heuristic: per
window of four cells holding only one player's stones, +/-5 for three stones and +/-2 for two, plus 3 per stone
of the mover's in the centre column minus 3 per stone of the other's. Terminal positions are detected exactly at
every node (a move that completes four ends the search there), so a depth >= the empty cells gives the exact
game-theoretic result (tests/test_rl_alphabeta.py checks it against brute-force minimax).
"""

import jax
import jax.numpy as jnp
import numpy as np

ROWS, COLS = 6, 7
WIN = 1_000_000
ORDER = (3, 2, 4, 1, 5, 0, 6)  # centre first: better cut-offs
FULL = sum(1 << (7 * c + r) for c in range(COLS) for r in range(ROWS))
CENTRE = sum(1 << (7 * 3 + r) for r in range(ROWS))


def _windows() -> tuple[int, ...]:
    cells = lambda pts: sum(1 << (7 * c + r) for c, r in pts)
    out = []
    for c in range(COLS):
        for r in range(ROWS):
            for dc, dr in ((1, 0), (0, 1), (1, 1), (1, -1)):
                pts = [(c + i * dc, r + i * dr) for i in range(4)]
                if all(0 <= x < COLS and 0 <= y < ROWS for x, y in pts):
                    out.append(cells(pts))
    return tuple(out)


WINDOWS = _windows()  # the 69 lines of four


def won(stones: int) -> bool:
    """Whether `stones` hold four in a row (horizontal, vertical or either diagonal)."""
    for shift in (7, 1, 8, 6):
        pairs = stones & (stones >> shift)
        if pairs & (pairs >> (2 * shift)):
            return True
    return False


def heuristic(me: int, opp: int) -> int:
    """The depth-0 score of a position for the mover (see the module docstring)."""
    score = 3 * ((me & CENTRE).bit_count() - (opp & CENTRE).bit_count())
    for w in WINDOWS:
        a, b = me & w, opp & w
        if a and not b:
            n = a.bit_count()
            score += 5 if n == 3 else 2 if n == 2 else 0
        elif b and not a:
            n = b.bit_count()
            score -= 5 if n == 3 else 2 if n == 2 else 0
    return score


def _moves(me: int, opp: int):
    """(column, new stone bit) of every legal move, centre first."""
    taken = me | opp
    for c in ORDER:
        col = (taken >> (7 * c)) & 0x3F
        if col != 0x3F:
            yield c, 1 << (7 * c + col.bit_length())


def negamax(me: int, opp: int, depth: int, alpha: float, beta: float, ply: int = 0) -> float:
    """The alpha-beta value for the mover of the position (me, opp) searched `depth` plies deep (fail-hard: the
    exact value if it lies in (alpha, beta), else a bound on that side). The mover has no four (nor has opp)."""
    if depth == 0:
        return heuristic(me, opp)
    any_move = False
    for _, bit in _moves(me, opp):
        any_move = True
        mine = me | bit
        if won(mine):
            v = WIN - ply - 1
        elif (mine | opp) == FULL:
            v = 0
        else:
            v = -negamax(opp, mine, depth - 1, -beta, -alpha, ply + 1)
        if v >= beta:
            return beta
        alpha = max(alpha, v)
    return alpha if any_move else 0


def root_values(me: int, opp: int, depth: int) -> dict[int, float]:
    """{column: value} of every legal root move; exact for every move whose value equals the best (the window
    is opened one below the best so far), a bound below it for worse moves."""
    out, best = {}, -float("inf")
    for c, bit in _moves(me, opp):
        mine = me | bit
        if won(mine):
            v = WIN - 1
        elif (mine | opp) == FULL:
            v = 0
        else:
            v = -negamax(opp, mine, depth - 1, -float("inf"), -(best - 1), 1)
        out[c], best = v, max(best, v)
    return out


def best_move(me: int, opp: int, depth: int, rng: np.random.Generator | None = None) -> int:
    """A column with the best alpha-beta value (`depth` >= 1), uniformly at random among ties if `rng` is given
    (else the first in centre-first order)."""
    if depth < 1:
        raise ValueError(f"alpha-beta depth={depth} must be >= 1")
    values = root_values(me, opp, depth)
    if not values:
        raise ValueError("no legal move: the board is full")
    top = max(values.values())
    ties = [c for c, v in values.items() if v == top]
    return int(ties[rng.integers(len(ties))]) if rng is not None else ties[0]


def from_grid(grid: np.ndarray) -> int:
    """The bitboard of bool [6, 7] stones laid out as pgx's observation planes (row 0 at the top)."""
    rows, cols = np.nonzero(np.asarray(grid))
    return sum(1 << (7 * int(c) + (ROWS - 1 - int(r))) for r, c in zip(rows, cols, strict=True))


def policy(depth: int):
    """A `jaxdl.rl.games` policy (pgx connect_four state batch [n], key) -> action int32 [n]: `best_move` at
    `depth` for each game from its observation (bool [n, 6, 7, 2]: plane 0 the mover's stones, plane 1 the
    other's), ties broken by a generator seeded from `key`. Finished games (terminated / truncated) get action 0."""
    if depth < 1:
        raise ValueError(f"alpha-beta depth={depth} must be >= 1")

    def host(obs: np.ndarray, over: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        out = np.zeros(obs.shape[0], np.int32)
        for i in range(obs.shape[0]):
            if not over[i]:  # (pgx marks every action legal once a game is over)
                me, opp = from_grid(obs[i, ..., 0]), from_grid(obs[i, ..., 1])
                out[i] = best_move(me, opp, depth, np.random.default_rng(int(seeds[i])))
        return out

    def act(state, key: jax.Array) -> jax.Array:
        obs = state.observation
        if obs.shape[-3:] != (ROWS, COLS, 2):
            raise ValueError(f"alpha-beta plays connect_four: observation shape {obs.shape} is not [n, 6, 7, 2]")
        seeds = jax.random.bits(key, (obs.shape[0],), jnp.uint32)
        out = jax.ShapeDtypeStruct((obs.shape[0],), jnp.int32)
        over = state.terminated | state.truncated
        return jax.pure_callback(host, out, obs, over, seeds, vmap_method="sequential")

    return act
