"""PPO CartPole-v1 study: 5 seeds of experiments/rl/ppo.py:cartpole (500k env steps each, 100-episode evaluations
every 5,120 env steps), then the table/plot beside the Stable-Baselines3 peer (peer_sb3.py, run right after in a
side virtualenv) and CleanRL's published number.

  python experiments/rl/ppo_study.py --workdir=/tmp/runs/ppo_study            # trains, writes ppo_cartpole.json
  /tmp/peer_rl/bin/python experiments/rl/peer_sb3.py --out=experiments/rl/peer_sb3.json
  python experiments/rl/ppo_study.py --report                                 # ppo_cartpole.png + the table

ppo_cartpole.json: per seed the evaluation curve (env steps, mean return over 100 episodes, its 95% CI, training
wall-clock excluding evaluation), the first env step / second at which the mean return reached 475, the final return.
"""

import datetime
import json
import math
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OURS, PEER, PNG = (os.path.join(HERE, f) for f in ("ppo_cartpole.json", "peer_sb3.json", "ppo_cartpole.png"))
SOLVED = 475.0


def environment() -> dict:
    import flax
    import gymnax
    import jax
    import optax

    return {
        "device": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared with other jobs), 1 JAX device",
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "gymnax": getattr(gymnax, "__version__", "0.0.9"),
    }


def return_curve(config, workdir: str) -> list[dict]:
    """A PPO run's evaluations as [{env_steps, return, ci95, train_s, cpu_s}]: trainer steps → environment steps
    (one rollout of num_envs × num_steps per update_epochs × num_minibatches trainer steps)."""
    from jaxdl.metrics import read_metrics

    per_rollout = config.task.update_epochs * config.task.num_minibatches
    rollout = config.task.num_envs * config.task.num_steps
    return [
        {
            "env_steps": math.ceil(r["step"] / per_rollout) * rollout,
            "return": r["eval/return"],
            "ci95": r["eval/return_ci95"],
            "train_s": r["eval/elapsed_s"],
            "cpu_s": r.get("eval/cpu_s"),
        }
        for r in read_metrics(workdir)
        if "eval/return" in r
    ]


def first_solved(curve: list[dict]) -> dict | None:
    return next((p for p in curve if p["return"] >= SOLVED), None)


def train(workdir: str, seeds: list[int], env_steps: int) -> None:
    sys.path.insert(0, HERE)
    import jax
    import ppo

    from jaxdl.train import train_and_evaluate

    runs = []
    for seed in seeds:
        c = ppo.get_config(f"cartpole,env_steps={env_steps}")
        c.seed = seed
        wd = os.path.join(workdir, f"seed{seed}")
        final = train_and_evaluate(c, wd, devices=jax.devices()[:1])
        curve = return_curve(c, wd)
        hit = first_solved(curve)
        runs.append(
            {
                "seed": seed,
                "final_return": final["eval/return"],
                "final_ci95": final["eval/return_ci95"],
                "solved_env_steps": hit and hit["env_steps"],
                "solved_train_s": hit and hit["train_s"],
                "solved_cpu_s": hit and hit["cpu_s"],
                "train_s_total": curve[-1]["train_s"],
                "curve": curve,
            }
        )
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "curve"}), flush=True)
    out = {
        "command": "python experiments/rl/ppo_study.py --workdir=" + workdir,
        "config": "experiments/rl/ppo.py:cartpole",
        "env_steps": env_steps,
        "environment": environment(),
        "runs": runs,
    }
    with open(OURS, "w") as f:
        json.dump(out, f, indent=1)


def _stats(xs):
    import numpy as np

    xs = [x for x in xs if x is not None]
    if not xs:
        return "—"
    return f"{np.mean(xs):.1f} ± {np.std(xs, ddof=1):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"


def report() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ours = json.load(open(OURS))
    peer = json.load(open(PEER)) if os.path.exists(PEER) else None
    fig, ax = plt.subplots(figsize=(7, 4))
    runs = ours["runs"]
    n = min(len(r["curve"]) for r in runs)
    x = np.array([p["env_steps"] for p in runs[0]["curve"][:n]])
    y = np.array([[p["return"] for p in r["curve"][:n]] for r in runs])
    m, s = y.mean(0), y.std(0, ddof=1)
    ax.plot(x, m, color="C0", label=f"ours (jaxdl ppo, gymnax): mean of {len(runs)} seeds, band ± std")
    ax.fill_between(x, m - s, m + s, color="C0", alpha=0.2)
    for i, r in enumerate(peer["runs"] if peer else []):  # each SB3 seed stops at its first evaluation >= 475
        pts = [p for p in r["curve"] if not p["gated"]]
        label = "SB3 PPO (gymnasium), per seed, from its first ungated evaluation" if i == 0 else None
        ax.plot([p["env_steps"] for p in pts], [p["return"] for p in pts], "o-", ms=2, lw=0.8, color="C1",
                alpha=0.7, label=label)  # fmt: skip
    ax.axhline(SOLVED, color="gray", ls="--", lw=1, label="475 (solved)")
    ax.axhline(490.04, color="C2", ls=":", lw=1, label="CleanRL ppo.py published: 490.04")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("mean return, 100 eval episodes")
    ax.set_title("PPO CartPole-v1 (band: ± sample std over seeds)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(PNG, dpi=120)
    rows = [("ours", ours)] + ([("SB3", peer)] if peer else [])
    print("| run | seeds | final return (100 eps) | seeds solved | env steps to 475 | train s to 475 | CPU s to 475 |")
    print("|---|---|---|---|---|---|---|")
    for name, d in rows:
        runs = d["runs"]
        solved = sum(r["solved_env_steps"] is not None for r in runs)
        print(
            f"| {name} | {len(runs)} | {_stats([r.get('final_return') for r in runs])} | {solved}/{len(runs)} | "
            f"{_stats([r['solved_env_steps'] for r in runs])} | {_stats([r['solved_train_s'] for r in runs])} | "
            f"{_stats([r.get('solved_cpu_s') for r in runs])} |"
        )


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="/tmp/runs/ppo_study")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--env_steps", type=int, default=500_000)
    p.add_argument("--report", action="store_true")
    args = p.parse_args()
    if args.report:
        report()
    else:
        train(args.workdir, [int(s) for s in args.seeds.split(",")], args.env_steps)
