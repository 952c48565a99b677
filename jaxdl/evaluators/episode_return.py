"""Mean episode return of the policy over `episodes` evaluation episodes with a 95% confidence interval (Student t
over the episodes: mean ± t_{0.975, n-1} s / sqrt(n)), for a task with an `env_name` (e.g. `ppo`) and an
actor-critic model (`model(obs) -> (logits, value)`).

    config.evals.main = dict(kind="episode_return", episodes=100, greedy=False, seed=0)

With a task that normalizes observations (`ppo` with `normalize_obs=True`) the policy sees them normalized by the
run's statistics (carry["env"]["obs_norm"]), frozen during evaluation.

Episodes run in parallel (one environment each, `jaxdl.rl.envs.run_episodes`) from a fixed key (`seed`), so one
checkpoint always gets the same number. `greedy`: the arg-max action instead of a sample from the policy.
Metrics: return (mean), return_ci95 (half-width), return_std, return_min, length (mean), solved_fraction (share of
episodes reaching `solved_at`, when set), elapsed_s (seconds since this evaluator was made minus the time it spent
evaluating: the training wall-clock, compile included, when it is the run's only evaluator) and cpu_s (the same for
the process's CPU time, all threads: less sensitive to other jobs on a shared machine)."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from flax import nnx

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator
from jaxdl.rl.envs import VecEnv, run_episodes
from jaxdl.rl.normalize import NormalizeObservation


def ci95(x: np.ndarray) -> float:
    """Half-width of the 95% Student-t confidence interval of the mean of `x` (0 for fewer than 2 values)."""
    n = len(x)
    if n < 2:
        return 0.0
    return float(scipy.stats.t.ppf(0.975, n - 1) * np.std(x, ddof=1) / np.sqrt(n))


class Evaluator(BaseEvaluator):
    def __init__(
        self,
        ctx: Context,
        *,
        episodes: int = 100,
        greedy: bool = False,
        seed: int = 0,
        env: str = "",
        solved_at: float = 0.0,
        **common,
    ):
        super().__init__(ctx, **common)
        env = env or getattr(ctx.task, "env_name", "")
        if not env:
            raise ValueError(f"task {ctx.config.task.name!r} names no environment: set env=... in this evaluator")
        if episodes < 1:
            raise ValueError(f"episodes={episodes} must be >= 1")
        self.vec = VecEnv(env, episodes)
        self.vec.require_discrete(ctx.ds_info.get("num_classes"), what="the model's policy head")
        self.key, self.solved_at = jax.random.key(seed), solved_at
        graphdef = ctx.graphdef

        self.normalized, self._stats = bool(getattr(ctx.task, "normalize_obs", False)), None

        def play(params, rest, key, stats):
            model = nnx.merge(graphdef, params, rest)
            vec = self.vec if stats is None else NormalizeObservation(self.vec, stats)

            def policy(obs, k):
                logits, _ = model(obs)
                return jnp.argmax(logits, -1) if greedy else jax.random.categorical(k, logits)

            return run_episodes(vec, lambda o, k: policy(o, k).astype(jnp.int32), key)

        self._play = jax.jit(play)
        self._born, self._spent = time.perf_counter(), 0.0
        self._cpu_born, self._cpu_spent = time.process_time(), 0.0

    def evaluate(self, state: dict) -> dict[str, float]:
        if self.normalized:  # the task normalizes observations: play with its statistics, frozen
            self._stats = state["carry"]["env"]["obs_norm"]
        return super().evaluate(state)

    def run(self, params, rest) -> dict[str, float]:
        if self.normalized and self._stats is None:
            raise ValueError("the task normalizes observations: evaluate a train state (its carry holds the stats)")
        t, c = time.perf_counter(), time.process_time()
        ret, length = jax.device_get(self._play(params, rest, self.key, self._stats))
        out = {
            "return": float(np.mean(ret)),
            "return_ci95": ci95(ret),
            "return_std": float(np.std(ret, ddof=1)) if len(ret) > 1 else 0.0,
            "return_min": float(np.min(ret)),
            "length": float(np.mean(length)),
        }
        if self.solved_at:
            out["solved_fraction"] = float(np.mean(ret >= self.solved_at))
        out["elapsed_s"] = t - self._born - self._spent
        out["cpu_s"] = c - self._cpu_born - self._cpu_spent
        self._spent += time.perf_counter() - t
        self._cpu_spent += time.process_time() - c
        return out
