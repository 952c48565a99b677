"""Win / draw / loss rates of an AlphaZero-style agent (network + mctx search, `num_simulations`) against
opponents, on the task's pgx game (`jaxdl.rl.games`), half of the games with the agent moving first:

- `random`: uniformly random legal moves;
- `mcts`: plain MCTS with the same simulation budget (uniform priors, random-playout leaf values);
- `minimax` (tic-tac-toe): the exact player; played from every first move (9 openings for the agent when it
  starts, 9 for minimax when it starts), `minimax_repeats` times each (minimax breaks ties at random).
- `policy_*`: the raw network (argmax of its policy, no search) against the same opponents.

    config.evals.games = dict(kind="games", games=100, opponents="random,mcts,minimax", every=0)

Metrics per opponent: <opp>/win, <opp>/draw, <opp>/loss (rates), and <opp>/losses (count) for minimax."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator
from jaxdl.rl import games as G

OPPONENTS = ("random", "mcts", "minimax", "policy_random", "policy_minimax")


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
            if o not in OPPONENTS:
                raise ValueError(f"opponents: {o!r} is not one of {OPPONENTS}")
            if "minimax" in o and task.game != "tic_tac_toe":
                raise ValueError(f"opponents: {o!r} is only available for tic_tac_toe, not {task.game!r}")
        if games < 2 or games % 2:
            raise ValueError(f"games={games} must be even and >= 2 (half with each side first)")
        self.games, self.repeats, self.key = games, minimax_repeats, jax.random.key(seed)
        env, graphdef = task.env, ctx.graphdef
        sims = num_simulations or task.num_simulations
        plain = G.mcts_policy(env, G.rollout_evaluator(env, G.MAX_MOVES[task.game]), sims)
        others = {"random": G.random_policy, "mcts": plain, "minimax": G.minimax_policy}

        def agent(params, rest, search: bool):
            model = nnx.merge(graphdef, params, rest)
            if search:
                return G.mcts_policy(env, lambda s, k: model(s.observation), sims, gumbel=True)
            return lambda s, k: jnp.argmax(
                jnp.where(s.legal_action_mask, model(s.observation)[0], -jnp.inf), -1
            ).astype(jnp.int32)

        def match(params, rest, key, opp: str, n: int, with_opening: bool):
            search = not opp.startswith("policy_")
            me, other = agent(params, rest, search), others[opp.removeprefix("policy_")]
            k1, k2, k3 = jax.random.split(key, 3)
            opening = None
            if with_opening:  # every first move, repeated: n = 9 * repeats
                opening = jnp.tile(jnp.arange(9, dtype=jnp.int32), n // 9)
            first = G.play(env, me, other, k1, n, opening)
            second = -G.play(env, other, me, k2, n, opening)
            return jnp.concatenate([first, second])

        self._match = jax.jit(match, static_argnums=(3, 4, 5))

    def run(self, params, rest) -> dict[str, float]:
        out = {}
        for i, opp in enumerate(self.opponents):
            exhaustive = opp.endswith("minimax")
            n = 9 * self.repeats if exhaustive else self.games // 2
            r = np.asarray(self._match(params, rest, jax.random.fold_in(self.key, i), opp, n, exhaustive))
            out |= {f"{opp}/win": float(np.mean(r > 0)), f"{opp}/draw": float(np.mean(r == 0))}
            out |= {f"{opp}/loss": float(np.mean(r < 0))}
            if exhaustive:
                out[f"{opp}/losses"] = float(np.sum(r < 0))
        return out
