"""Environment steps per second of a trained PPO run (the `env_throughput` evaluator on its last checkpoint): the
jitted vectorized CartPole rollout with the policy acting and with random actions, for several numbers of envs.

  python experiments/rl/throughput.py --workdir=/tmp/runs/ppo_study/seed0     # -> throughput.json
"""

import argparse
import json
import os

from ppo_study import environment

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    import jax

    from jaxdl import evaluators
    from jaxdl.state import restore_run
    from jaxdl.train import eval_context

    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="/tmp/runs/ppo_study/seed0")
    p.add_argument("--num_envs", default="4,64,1024")
    p.add_argument("--steps", type=int, default=500)
    args = p.parse_args()
    run = restore_run(args.workdir, None, jax.devices()[:1])
    ctx = eval_context(run.config, run.task, run.graphdef, run.ds_info, run.mesh, run.rules, run.state_sharding)
    rows = []
    for n in [int(x) for x in args.num_envs.split(",")]:
        spec = {"speed": dict(kind="env_throughput", num_envs=n, steps=args.steps, every=0)}
        ev = evaluators.make_all(spec, ctx)["speed"]
        rows.append({"num_envs": n, "steps": args.steps, **ev.evaluate(run.state)})
        print(rows[-1], flush=True)
    out = {
        "command": f"python experiments/rl/throughput.py --workdir={args.workdir} --num_envs={args.num_envs}",
        "environment": environment(),
        "rows": rows,
    }
    with open(os.path.join(HERE, "throughput.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
