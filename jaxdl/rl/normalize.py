"""Observation normalization for vectorized environments: running mean / variance of every observation seen
(Welford's algorithm, merged a batch at a time with Chan et al.'s parallel update), carried in the environment
carry so checkpoints and resume hold it, and frozen for evaluation.

The policy sees clip((obs - mean) / sqrt(var + eps), -clip, clip), as gymnasium's `NormalizeObservation` (which
CleanRL's continuous-control PPO uses) computes it: population variance, the statistics updated with each new
observation before it is normalized (so the very first observation already counts).

stats = {"count": float32 [], "mean": float32 [*obs_shape], "m2": float32 [*obs_shape]} (m2 = sum of squared
deviations from the mean; var = m2 / count).
"""

import jax
import jax.numpy as jnp


def init_stats(obs_shape: tuple[int, ...]) -> dict:
    """Empty statistics (count 0)."""
    return {
        "count": jnp.zeros((), jnp.float32),
        "mean": jnp.zeros(obs_shape, jnp.float32),
        "m2": jnp.zeros(obs_shape, jnp.float32),
    }


def update(stats: dict, batch: jax.Array) -> dict:
    """`stats` with the observations `batch` [n, *obs_shape] added (Chan et al. 1979: merge the batch's count, mean
    and m2 with the running ones; exact in real arithmetic, stable in float32)."""
    x = batch.astype(jnp.float32)
    n = jnp.float32(x.shape[0])
    mean_b = jnp.mean(x, 0)
    m2_b = jnp.sum((x - mean_b) ** 2, 0)
    total = stats["count"] + n
    delta = mean_b - stats["mean"]
    return {
        "count": total,
        "mean": stats["mean"] + delta * (n / total),
        "m2": stats["m2"] + m2_b + delta**2 * (stats["count"] * n / total),
    }


def variance(stats: dict) -> jax.Array:
    """Population variance float32 [*obs_shape] (0 before any observation)."""
    return stats["m2"] / jnp.maximum(stats["count"], 1.0)


def normalize(stats: dict, obs: jax.Array, clip: float = 10.0, eps: float = 1e-8) -> jax.Array:
    """clip((obs - mean) / sqrt(var + eps), -clip, clip), float32 of `obs`'s shape."""
    z = (obs.astype(jnp.float32) - stats["mean"]) / jnp.sqrt(variance(stats) + eps)
    return jnp.clip(z, -clip, clip)


class NormalizeObservation:
    """Wraps a `jaxdl.rl.envs.VecEnv`: the same `reset` / `step` interface, the carry
    {"inner": the VecEnv carry, "obs_norm": stats, "obs": normalized float32 [n, *obs_shape]}.

    `stats=None`: the statistics start empty and every reset / step adds the new observations (training).
    `stats=<dict>`: they stay fixed at those values (evaluation with the statistics a training run reached)."""

    def __init__(self, vec, stats: dict | None = None, clip: float = 10.0, eps: float = 1e-8):
        if clip <= 0 or eps <= 0:
            raise ValueError(f"observation normalization: clip={clip} and eps={eps} must be > 0")
        self.vec, self.stats, self.clip, self.eps = vec, stats, clip, eps
        for name in ("name", "num_envs", "num_actions", "obs_shape", "max_steps", "discrete", "require_discrete"):
            setattr(self, name, getattr(vec, name))

    def _wrap(self, inner: dict, stats: dict) -> dict:
        if self.stats is None:
            stats = update(stats, inner["obs"])
        return {"inner": inner, "obs_norm": stats, "obs": normalize(stats, inner["obs"], self.clip, self.eps)}

    def reset(self, key: jax.Array) -> dict:
        stats = init_stats(self.obs_shape) if self.stats is None else self.stats
        return self._wrap(self.vec.reset(key), stats)

    def step(self, carry: dict, action: jax.Array, key: jax.Array) -> tuple[dict, dict]:
        inner, transition = self.vec.step(carry["inner"], action, key)
        return self._wrap(inner, carry["obs_norm"]), transition
