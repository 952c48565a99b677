"""Peer: Stable-Baselines3 PPO on gymnasium CartPole-v1 with CleanRL ppo.py's hyperparameters (the same as
experiments/rl/ppo.py:cartpole), evaluated like ours (100 episodes, actions sampled from the policy, every 5,120
env steps), stopping at the first evaluation with a mean return >= 475 (or at 500k env steps). To keep the
peer's wall time affordable on the shared machine, the 100-episode evaluation runs only once the mean of the last 20
training episodes (SB3's ep_info_buffer, also sampled actions) is >= 400 (GATE); earlier points record that training
mean instead ("gated": true). Runs in a side virtualenv, never a jaxdl dependency:

  python3.12 -m venv /tmp/peer_rl && /tmp/peer_rl/bin/pip install torch stable-baselines3 gymnasium
  /tmp/peer_rl/bin/python experiments/rl/peer_sb3.py --seeds=0,1,2 --out=experiments/rl/peer_sb3.json

train_s is the wall-clock of training only (the evaluation time is subtracted), as for ours.
"""

import argparse
import datetime
import json
import os
import platform
import time

import gymnasium
import numpy as np
import stable_baselines3
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

SOLVED, EVAL_EVERY, EPISODES, GATE = 475.0, 5120, 100, 400.0


class EvalEvery(BaseCallback):
    def __init__(self, eval_env, stop_at_solved: bool):
        super().__init__()
        self.eval_env, self.stop_at_solved = eval_env, stop_at_solved
        self.curve, self.next_eval, self.eval_s, self.t0 = [], EVAL_EVERY, 0.0, time.perf_counter()
        self.eval_cpu_s, self.c0 = 0.0, time.process_time()

    def _on_step(self) -> bool:
        if self.num_timesteps < self.next_eval:
            return True
        self.next_eval += EVAL_EVERY
        t = time.perf_counter()
        train_s, cpu_s = t - self.t0 - self.eval_s, time.process_time() - self.c0 - self.eval_cpu_s
        recent = [e["r"] for e in list(self.model.ep_info_buffer)[-20:]]
        if not recent or np.mean(recent) < GATE:
            point = {"env_steps": int(self.num_timesteps), "return": float(np.mean(recent or [0.0])), "gated": True}
            self.curve.append(point | {"train_s": train_s, "cpu_s": cpu_s})
            return True
        c = time.process_time()
        rets, _ = evaluate_policy(
            self.model, self.eval_env, n_eval_episodes=EPISODES, deterministic=False, return_episode_rewards=True
        )
        self.eval_s += time.perf_counter() - t
        self.eval_cpu_s += time.process_time() - c
        point = {"env_steps": int(self.num_timesteps), "return": float(np.mean(rets)), "gated": False}
        self.curve.append(point | {"train_s": train_s, "cpu_s": cpu_s})
        print(self.curve[-1], flush=True)
        return not (self.stop_at_solved and self.curve[-1]["return"] >= SOLVED)


def run(seed: int, env_steps: int, stop_at_solved: bool) -> dict:
    torch.set_num_threads(1)  # one thread: faster than torch's default for 64-wide MLPs on 2 busy cores
    env = make_vec_env("CartPole-v1", n_envs=4, seed=seed)
    eval_env = make_vec_env("CartPole-v1", n_envs=10, seed=10_000 + seed)
    model = PPO(
        "MlpPolicy",
        env,
        learning_rate=lambda progress: 2.5e-4 * progress,  # linear to 0, as CleanRL's anneal_lr
        n_steps=128,
        batch_size=128,
        n_epochs=4,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        clip_range_vf=0.2,
        ent_coef=0.01,
        vf_coef=0.5,
        max_grad_norm=0.5,
        policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=torch.nn.Tanh),
        seed=seed,
        device="cpu",
    )
    cb = EvalEvery(eval_env, stop_at_solved)
    model.learn(total_timesteps=env_steps, callback=cb)
    hit = next((p for p in cb.curve if p["return"] >= SOLVED and not p["gated"]), None)
    return {
        "seed": seed,
        "final_return": None if stop_at_solved else cb.curve[-1]["return"],
        "solved_env_steps": hit and hit["env_steps"],
        "solved_train_s": hit and hit["train_s"],
        "solved_cpu_s": hit and hit["cpu_s"],
        "curve": cb.curve,
    }


def write(args, runs):
    out = {
        "command": f"/tmp/peer_rl/bin/python experiments/rl/peer_sb3.py --seeds={args.seeds}"
        + (" --full" if args.full else ""),
        "environment": {
            "device": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared with other jobs)",
            "date": datetime.date.today().isoformat(),
            "python": platform.python_version(),
            "stable_baselines3": stable_baselines3.__version__,
            "torch": torch.__version__,
            "gymnasium": gymnasium.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "runs": runs,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--env_steps", type=int, default=500_000)
    p.add_argument("--full", action="store_true", help="train the whole budget instead of stopping at 475")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_sb3.json"))
    args = p.parse_args()
    runs = []
    for s in args.seeds.split(","):  # the JSON is rewritten after every seed
        runs.append(run(int(s), args.env_steps, not args.full))
        write(args, runs)
