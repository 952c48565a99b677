"""Environment steps per second of the run's vectorized environments: with the model's policy acting (what a
rollout costs) and with uniformly random actions (the environment alone), each a jitted `lax.scan` of `steps`
steps of `num_envs` environments, timed after a compile-and-warm-up call (best of `repeats`).

    config.evals.speed = dict(kind="env_throughput", num_envs=512, steps=500, every=0)

The policy acts on the raw observations even when the task normalizes them (`normalize_obs`): the rate counts
environment steps and network calls, which normalization does not change (one elementwise op per step aside).
"""

import time

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator
from jaxdl.rl.envs import VecEnv


class Evaluator(BaseEvaluator):
    def __init__(
        self, ctx: Context, *, num_envs: int = 512, steps: int = 500, repeats: int = 3, env: str = "", **common
    ):
        super().__init__(ctx, **common)
        env = env or getattr(ctx.task, "env_name", "")
        if not env:
            raise ValueError(f"task {ctx.config.task.name!r} names no environment: set env=... in this evaluator")
        if min(num_envs, steps, repeats) < 1:
            raise ValueError(f"num_envs={num_envs}, steps={steps}, repeats={repeats} must be >= 1")
        vec = self.vec = VecEnv(env, num_envs)
        vec.require_discrete(ctx.ds_info.get("num_classes"), what="the model's policy head")
        self.steps, self.repeats, graphdef = steps, repeats, ctx.graphdef

        def rollout(params, rest, key, use_model: bool):
            model = nnx.merge(graphdef, params, rest)

            def body(c, k):
                k_act, k_env = jax.random.split(k)
                if use_model:
                    action = jax.random.categorical(k_act, model(c["obs"])[0])
                else:
                    action = jax.random.randint(k_act, (num_envs,), 0, vec.num_actions)
                c, tr = vec.step(c, action.astype(jnp.int32), k_env)
                return c, tr["reward"].sum()

            c, rewards = jax.lax.scan(body, vec.reset(key), jax.random.split(key, steps))
            return rewards.sum()

        self._rollout = jax.jit(rollout, static_argnums=3)

    def _rate(self, params, rest, use_model: bool) -> float:
        key = jax.random.key(0)
        jax.block_until_ready(self._rollout(params, rest, key, use_model))
        best = float("inf")
        for i in range(self.repeats):
            t = time.perf_counter()
            jax.block_until_ready(self._rollout(params, rest, jax.random.fold_in(key, i + 1), use_model))
            best = min(best, time.perf_counter() - t)
        return self.vec.num_envs * self.steps / best

    def run(self, params, rest) -> dict[str, float]:
        return {
            "env_steps_per_sec": self._rate(params, rest, True),
            "env_only_steps_per_sec": self._rate(params, rest, False),
        }
