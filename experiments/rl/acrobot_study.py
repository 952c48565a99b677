"""PPO on gymnax Acrobot-v1 with and without observation normalization (experiments/rl/ppo.py:acrobot[,norm]:
CleanRL ppo.py's hyperparameters, 500k env steps), seeds 0..n-1 of each, alternating arms so load changes on the
shared machine hit both alike -> acrobot.json (per run: the 100-episode evaluation curve, the final return, the
training wall-clock and CPU seconds excluding evaluation).

  python experiments/rl/acrobot_study.py --workdir=/tmp/runs/acrobot --seeds=0,1,2
  python experiments/rl/acrobot_study.py --report        # the README table rows from acrobot.json
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def report(path: str) -> None:
    """Markdown rows: per arm the final return mean +- sample std over seeds (n), the seeds' values, and the
    training wall-clock / CPU seconds (evaluation excluded)."""
    import numpy as np

    runs = json.load(open(path))["runs"]
    for norm in (False, True):
        rs = [r for r in runs if r["normalize_obs"] == norm]
        if not rs:
            continue
        ret = np.array([r["final_return"] for r in rs])
        wall, cpu = np.array([r["train_s"] for r in rs]), np.array([r["cpu_s"] for r in rs])
        sd = lambda x: f" ± {np.std(x, ddof=1):.1f}" if len(x) > 1 else ""
        print(
            f"| {'with' if norm else 'without'} | {len(rs)} | {ret.mean():.1f}{sd(ret)} "
            f"({', '.join(f'{x:.1f}' for x in ret)}) | {wall.mean():.0f}{sd(wall)} | {cpu.mean():.0f}{sd(cpu)} |"
        )


def main() -> None:
    import jax
    import ppo
    import ppo_study

    from jaxdl.train import train_and_evaluate

    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="/tmp/runs/acrobot")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--env_steps", type=int, default=500_000)
    p.add_argument("--eval_every", type=int, default=1600)  # train steps: every 100 rollouts (51,200 env steps)
    p.add_argument("--out", default="acrobot.json")
    p.add_argument("--report", action="store_true")
    args = p.parse_args()
    out_path = os.path.join(HERE, args.out)
    if args.report:
        return report(out_path)
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for norm in (False, True):
            arg = f"acrobot,env_steps={args.env_steps},eval_every={args.eval_every}" + (",norm" if norm else "")
            c = ppo.get_config(arg)
            c.seed = seed
            wd = os.path.join(args.workdir, f"{'norm' if norm else 'raw'}_seed{seed}")
            final = train_and_evaluate(c, wd, devices=jax.devices()[:1])
            curve = ppo_study.return_curve(c, wd)
            runs.append(
                {
                    "seed": seed,
                    "normalize_obs": norm,
                    "config": f"experiments/rl/ppo.py:{arg}",
                    "final_return": final["eval/return"],
                    "final_ci95": final["eval/return_ci95"],
                    "train_s": curve[-1]["train_s"],
                    "cpu_s": curve[-1]["cpu_s"],
                    "curve": curve,
                }
            )
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "curve"}), flush=True)
            out = {
                "command": f"python experiments/rl/acrobot_study.py --workdir={args.workdir} --seeds={args.seeds}"
                + f" --env_steps={args.env_steps} --eval_every={args.eval_every} --out={args.out}",
                "environment": ppo_study.environment(),
                "runs": runs,
            }
            with open(out_path, "w") as f:  # after every run: a cut-off study keeps what finished
                json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
