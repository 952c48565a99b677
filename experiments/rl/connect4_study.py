"""Connect four AlphaZero study: a round robin between the checkpoints of a run of experiments/rl/alphazero_connect4.py
and fixed players (random, plain MCTS with the agent's simulation budget, alpha-beta at depths 1, 2, 4), then an
Elo fit (jaxdl.rl.elo, random anchored at 0) over all those games -> connect4_study.json.

  python -m jaxdl.main --config=experiments/rl/alphazero_connect4.py --workdir=/tmp/runs/az_c4      # the run
  python experiments/rl/connect4_study.py --workdir=/tmp/runs/az_c4                                 # the games

Each pair plays every first move (7 openings) once with each side moving first (`--repeats` times): 14 games.
A checkpoint plays as network + Gumbel MuZero search with the run's `num_simulations`. JSON: per pair the W/D/L
of the first-named player, per checkpoint its record against each fixed player, the Elo of every player.
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

FIXED = ("random", "mcts", "alphabeta1", "alphabeta2", "alphabeta4")


def main() -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import ppo_study
    from flax import nnx

    from jaxdl.checkpoint import Checkpointer
    from jaxdl.evaluators.games import opponent
    from jaxdl.metrics import read_metrics
    from jaxdl.rl import elo
    from jaxdl.rl import games as G
    from jaxdl.state import restore_run

    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="/tmp/runs/az_c4")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--fixed", default=",".join(FIXED))
    p.add_argument("--out", default="connect4_study.json")
    args = p.parse_args()
    devices = jax.devices()[:1]
    with Checkpointer(os.path.join(args.workdir, "checkpoints"), async_save=False) as ck:
        steps = ck.all_steps()
    if not steps:
        raise FileNotFoundError(f"{args.workdir}/checkpoints holds no checkpoint")
    nets = {}
    for s in steps:
        run = restore_run(args.workdir, s, devices)
        nets[f"step{s}"] = (run.state["params"], run.state["rest"])
    env, graphdef, sims = run.task.env, run.graphdef, run.task.num_simulations
    fixed = [f for f in args.fixed.split(",") if f]
    names = list(nets) + fixed
    n = 7 * args.repeats
    opening = jnp.tile(jnp.arange(7, dtype=jnp.int32), args.repeats)

    fixed_policies = [opponent(f, env, sims) for f in fixed]

    def player(idx, params, state, key):
        """Player `idx`: 0 = the network `params` + Gumbel search, 1 + i = fixed[i]. One lax.switch, so the whole
        round robin is one compiled program (each compile of search + game costs minutes on the shared cores)."""
        model = nnx.merge(graphdef, *params)
        net = G.mcts_policy(env, lambda s, k: model(s.observation), sims, gumbel=True)
        branches = [lambda s, k: net(s, k)] + [lambda s, k, f=f: f(s, k) for f in fixed_policies]
        return jax.lax.switch(idx, branches, state, key)

    @jax.jit
    def match(ia, pa, ib, pb, key):
        """Results for A over 2n games: n with A moving first (every first move), n with B first."""
        a = lambda s, k: player(ia, pa, s, k)
        b = lambda s, k: player(ib, pb, s, k)
        k1, k2 = jax.random.split(key)
        return jnp.concatenate([G.play(env, a, b, k1, n, opening), -G.play(env, b, a, k2, n, opening)])

    any_net = next(iter(nets.values()))
    index = lambda name: 0 if name in nets else 1 + fixed.index(name)
    wins, draws = np.zeros((len(names),) * 2), np.zeros((len(names),) * 2)
    pairs = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            a, b = names[i], names[j]
            t = time.perf_counter()
            key = jax.random.fold_in(jax.random.key(0), i * len(names) + j)
            pa, pb = nets.get(a, any_net), nets.get(b, any_net)
            r = np.asarray(match(index(a), pa, index(b), pb, key))
            w, d, l_ = int((r > 0).sum()), int((r == 0).sum()), int((r < 0).sum())
            wins[i, j], wins[j, i], draws[i, j], draws[j, i] = w, l_, d, d
            pairs.append({"a": a, "b": b, "win": w, "draw": d, "loss": l_, "seconds": time.perf_counter() - t})
            print(json.dumps(pairs[-1]), flush=True)
    ratings = elo.fit(names, wins, draws, anchor="random")
    record = {ck: {f: next(x for x in pairs if x["a"] == ck and x["b"] == f) for f in fixed if f != ck} for ck in nets}
    out = {
        "command": f"python experiments/rl/connect4_study.py --workdir={args.workdir} --repeats={args.repeats}"
        + f" --out={args.out}",
        "run_config": json.load(open(os.path.join(args.workdir, "config.json"))),
        "environment": ppo_study.environment()
        | {"pgx": __import__("pgx").__version__, "mctx": __import__("mctx").__version__},  # fmt: skip
        "train": [
            {k: v for k, v in r.items() if k.startswith("train/") or k == "step"}
            for r in read_metrics(args.workdir)
            if "train/loss" in r
        ],
        "games_per_pair": 2 * n,
        "players": names,
        "pairs": pairs,
        "checkpoint_vs_fixed": record,
        "elo": ratings,
        "elo_note": "Bradley-Terry maximum likelihood over all pairs, draws as half points, prior sd 1000 Elo, "
        "random = 0",
    }
    with open(os.path.join(HERE, args.out), "w") as f:
        json.dump(out, f, indent=1)
    for name in names:
        print(f"{name:12s} {ratings[name]:8.1f}")


if __name__ == "__main__":
    main()
