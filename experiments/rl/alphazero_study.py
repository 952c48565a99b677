"""Runs experiments/rl/alphazero.py (seed 0 unless --seeds) and writes alphazero_tictactoe.json: per seed the
`games` evaluations over training (win/draw/loss rates vs random, plain MCTS, minimax; minimax losses from every
first move), the train metrics at each log, the environment.

  python experiments/rl/alphazero_study.py --workdir=/tmp/runs/az_study [--seeds=0]
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main() -> None:
    import alphazero
    import jax
    import ppo_study

    from jaxdl.metrics import read_metrics
    from jaxdl.train import train_and_evaluate

    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="/tmp/runs/az_study")
    p.add_argument("--seeds", default="0")
    p.add_argument("--arg", default="")
    p.add_argument("--out", default="alphazero_tictactoe.json")
    args = p.parse_args()
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        c = alphazero.get_config(args.arg)
        c.seed = seed
        wd = os.path.join(args.workdir, f"seed{seed}")
        train_and_evaluate(c, wd, devices=jax.devices()[:1])
        rows = read_metrics(wd)
        evals = [r for r in rows if any(k.startswith("eval/") for k in r)]
        train = [
            {k: v for k, v in r.items() if k.startswith("train/") or k == "step"} for r in rows if "train/loss" in r
        ]
        runs.append({"seed": seed, "evals": evals, "train": train})
        print(json.dumps(evals[-1]), flush=True)
    out = {
        "command": f"python experiments/rl/alphazero_study.py --workdir={args.workdir} --seeds={args.seeds}"
        + (f" --arg={args.arg}" if args.arg else "")
        + f" --out={args.out}",
        "config": "experiments/rl/alphazero.py" + (f":{args.arg}" if args.arg else ""),
        "environment": ppo_study.environment()
        | {"pgx": __import__("pgx").__version__, "mctx": __import__("mctx").__version__},  # fmt: skip
        "runs": runs,
    }
    with open(os.path.join(HERE, args.out), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
