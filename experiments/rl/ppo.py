"""PPO on gymnax CartPole-v1 / Acrobot-v1 with CleanRL ppo.py's hyperparameters (4 envs x 128 steps, 4 epochs x 4
minibatches, Adam 2.5e-4 eps 1e-5 annealed linearly to 0, clip 0.2 with value clipping, entropy 0.01, value 0.5,
max grad norm 0.5, gamma 0.99, GAE lambda 0.95, 64-64 tanh actor and critic), 500,000 environment steps
(= 15,632 train steps of one minibatch each).

One run:
  python -m jaxdl.main --config=experiments/rl/ppo.py:cartpole --workdir=/tmp/runs/ppo_cartpole_s0 --config.seed=0
The study (5 seeds + the SB3 peer, JSON + PNG; README.md has the measured numbers):
  python experiments/rl/ppo_study.py --workdir=/tmp/runs/ppo_study
Args: cartpole | acrobot; env_steps=<int> (default 500000); eval_every=<train steps> (default 160 = every 10
rollouts, 5,120 env steps); `norm`: observation normalization (running mean/var, jaxdl.rl.normalize); `,smoke` for
30 steps. Acrobot with and without `norm`: experiments/rl/acrobot_study.py (README.md). Runtime: ~2-4 min per CartPole seed on 2 shared CPU cores
(1 device). Expected (README.md): every seed reaches a mean return >= 475 over 100 evaluation episodes.
"""

import ml_collections

from jaxdl import config as config_lib
from jaxdl import tasks

ENVS = {"cartpole": "CartPole-v1", "acrobot": "Acrobot-v1"}


def get_config(arg: str = "cartpole") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(arg, env=tuple(ENVS), env_steps=500_000, eval_every=160, norm=bool)
    c = config_lib.base()
    c.task = ml_collections.ConfigDict(
        dict(
            name="ppo",
            env=ENVS[a.env],
            num_envs=4,
            num_steps=128,
            update_epochs=4,
            num_minibatches=4,
            normalize_obs=a.norm,
        )
    )
    c.model = ml_collections.ConfigDict(dict(name="actor_critic", hidden=(64, 64), activation="tanh"))
    c.mesh.data = 1
    c.optim.name, c.optim.lr, c.optim.eps, c.optim.clip_norm = "adam", 2.5e-4, 1e-5, 0.5
    c.optim.schedule, c.optim.end_lr_factor = "linear", 0.0
    c.train.steps = tasks.make(c.task).steps_for(a.env_steps)
    c.train.log_every = 160
    c.train.eval_every = a.eval_every
    c.train.checkpoint_every = 0
    c.train.async_checkpoints = False
    c.train.progress = False
    c.evals.main = dict(kind="episode_return", episodes=100, solved_at=475.0 if a.env == "cartpole" else 0.0)
    return config_lib.shrink_for_smoke(c) if a.smoke else c
