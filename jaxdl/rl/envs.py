"""Vectorized single-agent environments from gymnax, with auto-reset and episode statistics, as pure functions.

gymnax environments are pure JAX (`reset(key, params)`, `step(key, state, action, params)`) and already reset an
episode that ends inside `step` (the returned observation is the next episode's first); `VecEnv` vmaps them over
`num_envs` copies and adds what the learner and the evaluators need: the running return/length of each copy and,
on the step an episode ends, that episode's return and length (PureJaxRL's LogWrapper keeps the same statistics).
Truncation at `max_steps_in_episode` counts as an episode end (`done`), as in PureJaxRL and CleanRL's CartPole runs.

The carry is a plain dict of arrays (env state fields included), so orbax checkpoints it and restores it bitwise.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp


def available() -> list[str]:
    """The gymnax environment ids `make` accepts (those with a discrete action space are usable by PPO)."""
    import gymnax

    return list(gymnax.registered_envs)


def _strong(tree):
    """The same arrays without weak types (so scan / cond carries keep one signature)."""
    return jax.tree.map(lambda x: jax.lax.convert_element_type(jnp.asarray(x), jnp.asarray(x).dtype), tree)


class VecEnv:
    """`num_envs` copies of gymnax environment `name`; every array has a leading [num_envs] axis.

    carry = {"state": {field: [n, ...]}, "obs": float32 [n, *obs_shape], "ep_return": float32 [n],
    "ep_length": int32 [n]}."""

    def __init__(self, name: str, num_envs: int = 1):
        import gymnax
        from gymnax.environments import spaces

        if name not in gymnax.registered_envs:
            raise ValueError(f"environment {name!r} is not a gymnax environment; available: {', '.join(available())}")
        if num_envs < 1:
            raise ValueError(f"num_envs={num_envs} must be >= 1")
        self.name, self.num_envs = name, num_envs
        self.env, self.params = gymnax.make(name)
        space = self.env.action_space(self.params)
        self.discrete = isinstance(space, spaces.Discrete)
        self.num_actions = int(space.n) if self.discrete else None
        self.action_space_name = type(space).__name__
        self.obs_shape = tuple(self.env.observation_space(self.params).shape)
        self.max_steps = int(getattr(self.params, "max_steps_in_episode", 1000))
        _, state = self.env.reset(jax.random.key(0), self.params)
        self._state_type = type(state)

    def require_discrete(self, num_actions: int | None = None, what: str = "the policy head") -> None:
        """Fails naming the environment unless its actions are Discrete (and, if given, exactly `num_actions`)."""
        if not self.discrete:
            raise ValueError(
                f"environment {self.name!r} has a {self.action_space_name} action space; {what} is categorical "
                "(needs a Discrete action space)"
            )
        if num_actions is not None and num_actions != self.num_actions:
            raise ValueError(f"{what} has {num_actions} actions but environment {self.name!r} has {self.num_actions}")

    def _pack(self, state) -> dict:
        return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}

    def _unpack(self, fields: dict):
        return self._state_type(**fields)

    def reset(self, key: jax.Array) -> dict:
        """The carry of `num_envs` fresh episodes (one key each, split from `key`)."""
        obs, state = jax.vmap(self.env.reset, in_axes=(0, None))(jax.random.split(key, self.num_envs), self.params)
        n = self.num_envs
        return _strong(
            {
                "state": self._pack(state),
                "obs": obs.astype(jnp.float32),
                "ep_return": jnp.zeros((n,), jnp.float32),
                "ep_length": jnp.zeros((n,), jnp.int32),
            }
        )

    def step(self, carry: dict, action: jax.Array, key: jax.Array) -> tuple[dict, dict[str, Any]]:
        """One step of every copy: action int32 [n] -> (new carry, transition) where transition = {"reward" float32
        [n], "done" bool [n] (the episode ended on this step; carry["obs"] is then the next episode's first),
        "episode_return" float32 [n] / "episode_length" int32 [n] (of the episode that ended; 0 elsewhere)}."""
        keys = jax.random.split(key, self.num_envs)
        obs, state, reward, done, _ = jax.vmap(self.env.step, in_axes=(0, 0, 0, None))(
            keys, self._unpack(carry["state"]), action, self.params
        )
        reward, done = reward.astype(jnp.float32), done.astype(bool)
        ep_return, ep_length = carry["ep_return"] + reward, carry["ep_length"] + 1
        transition = {
            "reward": reward,
            "done": done,
            "episode_return": jnp.where(done, ep_return, 0.0),
            "episode_length": jnp.where(done, ep_length, 0),
        }
        new = {
            "state": self._pack(state),
            "obs": obs.astype(jnp.float32),
            "ep_return": jnp.where(done, 0.0, ep_return),
            "ep_length": jnp.where(done, 0, ep_length),
        }
        return _strong(new), transition


def run_episodes(vec: VecEnv, policy, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(return float32 [n], length int32 [n]) of the first episode of each of `vec.num_envs` environments, playing
    `policy(obs float32 [n, *obs_shape], key) -> action int32 [n]` for `vec.max_steps` steps (every episode ends
    by then: gymnax truncates there). Traceable: jit it."""
    k_reset, k_run = jax.random.split(key)

    def body(c, k):
        env_carry, ret, length, live = c
        k_act, k_env = jax.random.split(k)
        env_carry, tr = vec.step(env_carry, policy(env_carry["obs"], k_act), k_env)
        ret = jnp.where(live & tr["done"], tr["episode_return"], ret)
        length = jnp.where(live & tr["done"], tr["episode_length"], length)
        return (env_carry, ret, length, live & ~tr["done"]), None

    n = vec.num_envs
    init = (vec.reset(k_reset), jnp.zeros((n,), jnp.float32), jnp.zeros((n,), jnp.int32), jnp.ones((n,), bool))
    (_, ret, length, live), _ = jax.lax.scan(body, init, jax.random.split(k_run, vec.max_steps))
    # an episode still running after max_steps (an environment without truncation) counts what it collected
    return ret, jnp.where(live, vec.max_steps, length)
