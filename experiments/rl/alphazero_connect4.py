"""AlphaZero-style connect four (pgx `connect_four`) with mctx Gumbel MuZero self-play: the residual policy-value CNN
(jaxdl.models.rl.policy_value_net, 32 channels, 2 blocks), 64 self-play games of `simulations` (16) simulations
every 4 steps (each game opens with 0-2 uniformly random, untrained moves), a replay buffer of 4 rounds
(10,752 positions), batches of 128, AdamW 1e-3 (weight decay 1e-4); a checkpoint every `every` steps, all kept.

One run (the study's, README.md):
  python -m jaxdl.main --config=experiments/rl/alphazero_connect4.py:steps=600,every=150,games=32 \
      --workdir=/tmp/runs/az_c4_600
then every checkpoint against random, plain MCTS and alpha-beta at depths 1, 2, 4 over both colours, a round robin
and an Elo fit:
  python experiments/rl/connect4_study.py --workdir=/tmp/runs/az_c4_600 --out=connect4_study_600.json
Args: steps=<int> (default 1200), simulations=<int> (16), every=<int> (checkpoint interval, 300), opening=<int>
(2), games=<int> (self-play games per round, 64; the buffer holds 4 rounds); `,smoke` for 30 steps.
Runtime (steps=600, games=32): 5.8 min wall on the 2 shared cores (1 device), the round robin ~2 min.
Measured (README.md, seed 0, 600 steps): beats random 14/14 and plain MCTS 10/14, loses to alpha-beta at depths
1, 2, 4 (Elo 561 against 748 / 1011 / 1253, random = 0).
"""

import ml_collections

from jaxdl import config as config_lib


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(arg, steps=1200, simulations=16, every=300, opening=2, games=64)
    c = config_lib.base()
    c.task = ml_collections.ConfigDict(
        dict(
            name="alphazero",
            game="connect_four",
            num_games=a.games,
            num_simulations=a.simulations,
            selfplay_every=4,
            buffer_size=a.games * 42 * 4,
            batch_size=128,
            random_opening=a.opening,
        )
    )
    c.model = ml_collections.ConfigDict(dict(name="policy_value_net", channels=32, blocks=2))
    c.mesh.data = 1
    c.optim.name, c.optim.lr, c.optim.weight_decay = "adamw", 1e-3, 1e-4
    c.train.steps = a.steps
    c.train.log_every = 50
    c.train.eval_every = 0  # evaluated from the checkpoints afterwards (connect4_study.py)
    c.train.checkpoint_every = a.every
    c.train.keep_checkpoints = a.steps // a.every + 1
    c.train.async_checkpoints = False
    c.train.progress = False
    c.evals.main = dict(kind="games", games=20, opponents="random")  # the rest: connect4_study.py
    c.evals.main.minimax_repeats = 1
    if a.smoke:
        c = config_lib.shrink_for_smoke(c)
        c.task.num_games, c.task.num_simulations, c.task.buffer_size = 8, 4, 8 * 42 * 2
        c.train.keep_checkpoints = 3
        c.evals.main.games = 2
    return c
