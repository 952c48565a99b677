"""Denoising diffusion (Ho et al. 2020, DDPM) with ε-prediction, and the one home of its noise schedules and
samplers (DDPM ancestral, DDIM of Song et al. 2021).

Data x in [0, 1] are mapped to x0 = 2x - 1. Training: t ~ U{0..T-1}, ε ~ N(0, I), x_t = √ᾱ_t x0 + √(1-ᾱ_t) ε,
loss = mean (ε - ε_θ(x_t, t))² over pixels and batch (Ho et al.'s "simple" loss). `config.train.ema_decay`
(e.g. 0.999) keeps the parameters' EMA in the train state; evaluators with `use_ema=True` sample from it.

Schedules (`make_schedule`): "linear" (β from 1e-4 to 0.02 over T = 1000 steps, rescaled by 1000/T for other
T, as in Nichol & Dhariwal 2021) and "cosine" (ᾱ_t = f(t)/f(0), f(t) = cos²((t/T + 0.008)/1.008 · π/2), β
clipped at 0.999). Indices: ᾱ[t] is the cumulative product up to and including step t (0-based), so x_t at t = 0
is the least noisy latent.

Samplers, both over any ε-function `eps_fn(x [n, ...], t int32 [n]) -> ε [n, ...]` in `lax.scan`:
- `ddpm_sample`: ancestral sampling with the posterior q(x_{t-1} | x_t, x̂0) mean and variance
  β̃_t = β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t) (no noise at t = 0);
- `ddim_sample`: DDIM on an evenly spaced subsequence of `steps` timesteps with noise scale η (0: deterministic;
  1 with all T steps: the same transitions as `ddpm_sample`).
Both draw the step noise of timestep t from `fold_in(key, t)`, so DDIM(η=1, all steps) and DDPM given the same
key take the same path. `clip` bounds x̂0 (images: [-1, 1]).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.tasks.base import Task as BaseTask

SCHEDULES = ("linear", "cosine")
SAMPLERS = ("ddpm", "ddim")


def make_schedule(name: str, timesteps: int) -> dict[str, np.ndarray]:
    """{"betas", "alphas", "alpha_bar"}: float64 [timesteps] of schedule `name` (ValueError naming it if unknown)."""
    if name not in SCHEDULES:
        raise ValueError(f"config.task.schedule={name!r} is not a noise schedule; choose one of {SCHEDULES}")
    if timesteps < 2:
        raise ValueError(f"config.task.timesteps={timesteps} must be >= 2")
    if name == "linear":
        scale = 1000.0 / timesteps
        betas = np.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=np.float64)
        if betas[-1] >= 1.0:  # 1 - β must stay a positive scale of x_{t-1}
            raise ValueError(
                f"config.task.timesteps={timesteps}: the linear schedule rescaled by 1000/T reaches β = "
                f"{betas[-1]:g} >= 1; use timesteps >= 21 (or schedule='cosine')"
            )
    else:
        s = 0.008
        f = np.cos((np.arange(timesteps + 1, dtype=np.float64) / timesteps + s) / (1 + s) * math.pi / 2) ** 2
        betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
    alphas = 1.0 - betas
    return {"betas": betas, "alphas": alphas, "alpha_bar": np.cumprod(alphas)}


def q_sample(x0: jax.Array, t: jax.Array, eps: jax.Array, alpha_bar) -> jax.Array:
    """x_t = √ᾱ_t x0 + √(1-ᾱ_t) ε for x0, ε [n, ...] and int t [n] (a sample of q(x_t | x0))."""
    ab = jnp.asarray(alpha_bar, jnp.float32)[t].reshape(-1, *([1] * (x0.ndim - 1)))
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps


def _x0_hat(x, eps, ab, clip):
    x0 = (x - jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(ab)
    return x0 if clip is None else jnp.clip(x0, -clip, clip)


def ddpm_sample(eps_fn, shape: tuple[int, ...], key: jax.Array, schedule: dict, clip: float | None = None):
    """DDPM ancestral sampling: x_T ~ N(0, I), then T posterior steps -> x0 float32 `shape` [n, ...]."""
    betas = jnp.asarray(schedule["betas"], jnp.float32)
    ab = jnp.asarray(schedule["alpha_bar"], jnp.float32)
    ab_prev = jnp.concatenate([jnp.ones((1,)), ab[:-1]])
    alphas = jnp.asarray(schedule["alphas"], jnp.float32)
    coef_x0 = betas * jnp.sqrt(ab_prev) / (1.0 - ab)
    coef_xt = (1.0 - ab_prev) * jnp.sqrt(alphas) / (1.0 - ab)
    var = betas * (1.0 - ab_prev) / (1.0 - ab)
    x_key, noise_key = jax.random.split(key)

    def step(x, t):
        eps = eps_fn(x, jnp.full((shape[0],), t, jnp.int32))
        mean = coef_x0[t] * _x0_hat(x, eps, ab[t], clip) + coef_xt[t] * x
        z = jax.random.normal(jax.random.fold_in(noise_key, t), shape)
        return mean + jnp.where(t > 0, jnp.sqrt(var[t]), 0.0) * z, None

    x, _ = jax.lax.scan(step, jax.random.normal(x_key, shape), jnp.arange(len(schedule["betas"]) - 1, -1, -1))
    return x


def ddim_timesteps(timesteps: int, steps: int) -> np.ndarray:
    """The increasing int subsequence of `steps` timesteps in [0, timesteps) that DDIM visits (ends at T-1)."""
    if not 1 <= steps <= timesteps:
        raise ValueError(f"DDIM steps={steps} must be in [1, {timesteps}] (the schedule's timesteps)")
    return np.unique(np.round(np.linspace(0, timesteps - 1, steps)).astype(np.int32))


def ddim_sample(
    eps_fn,
    shape: tuple[int, ...],
    key: jax.Array,
    schedule: dict,
    steps: int,
    eta: float = 0.0,
    clip: float | None = None,
):
    """DDIM sampling over `ddim_timesteps(T, steps)` with noise scale `eta` -> x0 float32 `shape` [n, ...]:
    x_prev = √ᾱ_prev x̂0 + √(1 - ᾱ_prev - σ²) ε + σ z, σ = η √((1-ᾱ_prev)/(1-ᾱ_t)) √(1 - ᾱ_t/ᾱ_prev)."""
    ts = ddim_timesteps(len(schedule["betas"]), steps)
    ab_all = jnp.asarray(schedule["alpha_bar"], jnp.float32)
    prev = jnp.asarray(np.concatenate([[-1], ts[:-1]]), jnp.int32)
    x_key, noise_key = jax.random.split(key)

    def step(x, tp):
        t, t_prev = tp
        ab = ab_all[t]
        ab_prev = jnp.where(t_prev >= 0, ab_all[jnp.maximum(t_prev, 0)], 1.0)
        eps = eps_fn(x, jnp.full((shape[0],), t, jnp.int32))
        sigma = eta * jnp.sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev))
        z = jax.random.normal(jax.random.fold_in(noise_key, t), shape)
        direction = jnp.sqrt(jnp.maximum(1.0 - ab_prev - sigma**2, 0.0)) * eps
        return jnp.sqrt(ab_prev) * _x0_hat(x, eps, ab, clip) + direction + sigma * z, None

    order = (jnp.asarray(ts[::-1]), prev[::-1])
    x, _ = jax.lax.scan(step, jax.random.normal(x_key, shape), order)
    return x


class Task(BaseTask):
    """Options: schedule ("linear" | "cosine"), timesteps T; the evaluators' default sampler ("ddpm" | "ddim"),
    sample_steps (DDIM) and eta (DDIM noise)."""

    batch_keys = ("input",)

    def __init__(
        self,
        *,
        schedule: str = "linear",
        timesteps: int = 1000,
        sampler: str = "ddim",
        sample_steps: int = 50,
        eta: float = 0.0,
    ):
        super().__init__()
        self.schedule_name, self.timesteps = schedule, int(timesteps)
        self.schedule = make_schedule(schedule, self.timesteps)
        self.sample_options = self.check_sample_options(dict(sampler=sampler, steps=sample_steps, eta=eta))

    def check_sample_options(self, options: dict) -> dict:
        """The sampler options completed with the task's defaults; ValueError naming a bad one."""
        out = dict(getattr(self, "sample_options", {})) | dict(options)
        if out["sampler"] not in SAMPLERS:
            raise ValueError(f"sampler={out['sampler']!r} is not a diffusion sampler; choose one of {SAMPLERS}")
        if out["sampler"] == "ddim":
            ddim_timesteps(self.timesteps, int(out["steps"]))
        if not 0.0 <= float(out["eta"]) <= 1.0:
            raise ValueError(f"eta={out['eta']} must be in [0, 1]")
        return out

    def check_batch(self, batch: dict) -> None:
        from jaxdl.models.generative._conv import check_images

        check_images(batch["input"], batch["input"].shape[1:], "diffusion batch 'input'")

    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        x0 = 2.0 * batch["input"].astype(jnp.float32) - 1.0
        n = x0.shape[0]
        t = jax.random.randint(rngs.sampling(), (n,), 0, self.timesteps)
        eps = jax.random.normal(rngs.sampling(), x0.shape)
        pred = model(q_sample(x0, t, eps, self.schedule["alpha_bar"]), t, train=True, rngs=rngs)
        per_example = jnp.mean((pred - eps) ** 2, axis=tuple(range(1, x0.ndim)))
        if "mask" in batch:  # padding rows
            w = batch["mask"].astype(jnp.float32)
            return jnp.sum(per_example * w) / jnp.maximum(w.sum(), 1.0), {}
        return jnp.mean(per_example), {}

    def sample(self, model: nnx.Module, key: jax.Array, n: int, **options) -> jax.Array:
        """n images float32 [n, H, W, C] in [0, 1] from the model (`options`: sampler, steps, eta)."""
        o = self.check_sample_options(options)
        shape = (n, *model.shape)
        eps_fn = lambda x, t: model(x, t, train=False)
        if o["sampler"] == "ddpm":
            x = ddpm_sample(eps_fn, shape, key, self.schedule, clip=1.0)
        else:
            x = ddim_sample(eps_fn, shape, key, self.schedule, int(o["steps"]), float(o["eta"]), clip=1.0)
        return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="samples")}
