"""Reinforcement learning pieces the RL tasks and evaluators share: vectorized gymnax environments with episode
statistics (`envs`), generalized advantage estimation (`gae`), the PPO objective (`ppo`), pgx board games with an
exact minimax player and MCTS opponents (`games`). Nothing here imports `jaxdl.models` or the trainer."""
