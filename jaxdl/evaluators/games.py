"""Win / draw / loss rates of an AlphaZero-style agent (network + mctx search, `num_simulations`) against
opponents, on the task's pgx game (`jaxdl.rl.games`), half of the games with the agent moving first:

- `random`: uniformly random legal moves;
- `mcts`: plain MCTS with the same simulation budget (uniform priors, random-playout leaf values);
- `minimax` (tic-tac-toe): the exact player; played from every first move (9 openings for the agent when it
  starts, 9 for minimax when it starts), `minimax_repeats` times each (minimax breaks ties at random).
- `alphabeta<d>` (connect four, e.g. `alphabeta4`): the depth-d alpha-beta player (`jaxdl.rl.alphabeta`), exact
  within its depth; played like minimax from every first move (7 openings per side), `minimax_repeats` times each.
- `policy_*`: the raw network (argmax of its policy, no search) against the same opponents.

    config.evals.games = dict(kind="games", games=100, opponents="random,mcts,minimax", every=0)
    config.evals.games = dict(kind="games", games=40, opponents="random,mcts,alphabeta1,alphabeta4")  # connect four

Metrics per opponent: <opp>/win, <opp>/draw, <opp>/loss (rates), and <opp>/losses (count) for minimax and
alpha-beta."""

import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator
from jaxdl.rl import alphabeta
from jaxdl.rl import games as G

OPPONENTS = ("random", "mcts", "minimax", "alphabeta<depth>", "policy_random", "policy_minimax", "policy_alphabeta<d>")


def check_opponent(name: str, game: str) -> None:
    """Fails naming `name` unless it is an opponent this evaluator plays in `game`."""
    base = name.removeprefix("policy_")
    m = re.fullmatch(r"alphabeta(\d+)", base)
    if base not in ("random", "mcts", "minimax") and not (m and int(m.group(1)) >= 1):
        raise ValueError(f"opponents: {name!r} is not one of {OPPONENTS}")
    if base == "mcts" and name != base:
        raise ValueError(f"opponents: {name!r} is not one of {OPPONENTS}")
    if base == "minimax" and game != "tic_tac_toe":
        raise ValueError(f"opponents: {name!r} is only available for tic_tac_toe, not {game!r}")
    if m and game != "connect_four":
        raise ValueError(f"opponents: {name!r} is only available for connect_four, not {game!r}")


def opponent(name: str, env, num_simulations: int):
    """The fixed player `name` (random, mcts, minimax, alphabeta<d>) as a `jaxdl.rl.games` policy."""
    if name == "random":
        return G.random_policy
    if name == "mcts":
        return G.mcts_policy(env, G.rollout_evaluator(env, G.MAX_MOVES[env.id]), num_simulations)
    if name == "minimax":
        return G.minimax_policy
    return alphabeta.policy(int(name.removeprefix("alphabeta")))


class Evaluator(BaseEvaluator):
    def __init__(
        self,
        ctx: Context,
        *,
        games: int = 100,
        opponents: str = "random,mcts,minimax",
        num_simulations: int = 0,
        minimax_repeats: int = 2,
        seed: int = 0,
        **common,
    ):
        super().__init__(ctx, **common)
        task = ctx.task
        if not hasattr(task, "env") or not hasattr(task, "game"):
            raise ValueError(f"evaluator 'games' needs a board-game task (alphazero), not {ctx.config.task.name!r}")
        self.opponents = [o for o in opponents.split(",") if o]
        for o in self.opponents:
            check_opponent(o, task.game)
        if games < 2 or games % 2:
            raise ValueError(f"games={games} must be even and >= 2 (half with each side first)")
        self.games, self.repeats, self.key = games, minimax_repeats, jax.random.key(seed)
        env, graphdef = task.env, ctx.graphdef
        sims = num_simulations or task.num_simulations
        moves = self.first_moves = int(task.num_actions)  # every first move: 9 (tic-tac-toe), 7 (connect four)

        def agent(params, rest, search: bool):
            model = nnx.merge(graphdef, params, rest)
            if search:
                return G.mcts_policy(env, lambda s, k: model(s.observation), sims, gumbel=True)
            return lambda s, k: jnp.argmax(
                jnp.where(s.legal_action_mask, model(s.observation)[0], -jnp.inf), -1
            ).astype(jnp.int32)

        def match(params, rest, key, opp: str, n: int, with_opening: bool):
            search = not opp.startswith("policy_")
            me, other = agent(params, rest, search), opponent(opp.removeprefix("policy_"), env, sims)
            k1, k2, k3 = jax.random.split(key, 3)
            opening = None
            if with_opening:  # every first move, repeated: n = first moves * repeats
                opening = jnp.tile(jnp.arange(moves, dtype=jnp.int32), n // moves)
            first = G.play(env, me, other, k1, n, opening)
            second = -G.play(env, other, me, k2, n, opening)
            return jnp.concatenate([first, second])

        self._match = jax.jit(match, static_argnums=(3, 4, 5))

    def run(self, params, rest) -> dict[str, float]:
        out = {}
        for i, opp in enumerate(self.opponents):
            exhaustive = opp.endswith("minimax") or "alphabeta" in opp
            n = self.first_moves * self.repeats if exhaustive else self.games // 2
            r = np.asarray(self._match(params, rest, jax.random.fold_in(self.key, i), opp, n, exhaustive))
            out |= {f"{opp}/win": float(np.mean(r > 0)), f"{opp}/draw": float(np.mean(r == 0))}
            out |= {f"{opp}/loss": float(np.mean(r < 0))}
            if exhaustive:
                out[f"{opp}/losses"] = float(np.sum(r < 0))
        return out
