"""Reinforcement-learning models: `actor_critic` (PPO's policy + value MLPs) and `policy_value_net` (AlphaZero's
residual network with policy and value heads)."""
