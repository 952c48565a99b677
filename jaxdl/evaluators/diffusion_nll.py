"""The variational bound of a DDPM run (`jaxdl.tasks.diffusion`) in bits/dim on a split's images (Ho et al. 2020,
eq. 5): -log p(x0) <= L_T + Σ_{t=2..T} L_{t-1} + L_0, with

    L_T     = KL(q(x_T | x0) || N(0, I))                                   (the prior term; ≈ 0 for these schedules)
    L_{t-1} = KL(q(x_{t-1} | x_t, x0) || p_θ(x_{t-1} | x_t)),  x_t ~ q(x_t | x0)   (one draw per image and t)
    L_0     = -log p_θ(x0 | x_1), the discretized Gaussian decoder over the 256 pixel bins of width 2/255 in [-1, 1]
              (the edge bins extend to ±∞)

p_θ(x_{t-1} | x_t) = N(μ_θ, σ_t²): μ_θ is the posterior mean at x̂0 = (x_t - √(1-ᾱ_t) ε_θ) / √ᾱ_t clipped to [-1, 1]
(the samplers' parameterization); σ_t² is fixed, `variance="small"` (β̃_t, the posterior variance, with β̃_1 := β̃_2
so the decoder is not a point mass; what `ddpm_sample` uses) or `"large"` (β_t, first entry β̃_2), the two choices of
Ho et al. (as in Nichol & Dhariwal's `improved-diffusion`, whose formulas these follow). Written here, not taken
from a library: no kept library computes a DDPM bound for an arbitrary JAX ε-network.

    config.evals.nll = dict(kind="diffusion_nll", num_examples=500, use_ema=True)

Data x in [0, 1] must be multiples of 1/255 (8-bit images, e.g. `fashion_mnist_unit`); x0 = 2x - 1. Each image
costs T ε-network passes (all terms are summed exactly over t; the x_t draws make it a one-sample estimate of
each term). Metrics, per image averaged over the first `num_examples` images of the split (0: all): bits_per_dim
(the whole bound), prior_bpd, diffusion_bpd (Σ L_{t-1}), decoder_bpd (L_0), and nats (the bound in nats/image).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator

VARIANCES = ("small", "large")


def normal_kl(mean1, logvar1, mean2, logvar2):
    """Elementwise KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) in nats (arrays broadcast)."""
    return 0.5 * (logvar2 - logvar1 + jnp.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * jnp.exp(-logvar2) - 1.0)


def _std_normal_cdf(x):
    return 0.5 * (1.0 + jax.scipy.special.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x, mean, log_scale):
    """log P(bin of x) for x in [-1, 1] on the 256-level grid under N(mean, e^{2 log_scale}), elementwise, nats:
    the Gaussian mass of [x - 1/255, x + 1/255], with the edge bins x = -1 / x = 1 open to -∞ / +∞."""
    inv = jnp.exp(-log_scale)
    cdf_plus = _std_normal_cdf(inv * (x - mean + 1.0 / 255.0))
    cdf_min = _std_normal_cdf(inv * (x - mean - 1.0 / 255.0))
    log_cdf_plus = jnp.log(jnp.maximum(cdf_plus, 1e-12))
    log_one_minus_cdf_min = jnp.log(jnp.maximum(1.0 - cdf_min, 1e-12))
    log_mid = jnp.log(jnp.maximum(cdf_plus - cdf_min, 1e-12))
    return jnp.where(x < -0.999, log_cdf_plus, jnp.where(x > 0.999, log_one_minus_cdf_min, log_mid))


def bound_coefficients(schedule: dict, variance: str = "small") -> dict[str, np.ndarray]:
    """float64 [T] arrays of the bound: posterior mean coefficients of x0 and x_t, the posterior variance β̃
    (β̃_1 := β̃_2 in `post_logvar`, as the decoder needs a positive variance) and the model's log variance."""
    if variance not in VARIANCES:
        raise ValueError(f"variance={variance!r} is not a fixed DDPM variance; choose one of {VARIANCES}")
    betas, alphas, ab = schedule["betas"], schedule["alphas"], schedule["alpha_bar"]
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    post_var = betas * (1.0 - ab_prev) / (1.0 - ab)
    post_logvar = np.log(np.concatenate([[post_var[1]], post_var[1:]]))
    model_logvar = post_logvar if variance == "small" else np.log(np.concatenate([[post_var[1]], betas[1:]]))
    return {
        "coef_x0": betas * np.sqrt(ab_prev) / (1.0 - ab),
        "coef_xt": (1.0 - ab_prev) * np.sqrt(alphas) / (1.0 - ab),
        "post_logvar": post_logvar,
        "model_logvar": model_logvar,
        "alpha_bar": ab,
    }


def vlb_terms(eps_fn, x0: jax.Array, key: jax.Array, schedule: dict, variance: str = "small"):
    """The bound's terms for images x0 [n, ...] in [-1, 1] on the 1/255 grid: (prior [n], terms [n, T]) in nats per
    image. terms[:, 0] = L_0 (decoder), terms[:, t] = L_t = KL(q(x_t | x_{t+1}, x0) || p_θ(x_t | x_{t+1})) for
    t >= 1 in the paper's 1-based indices, i.e. the term of our 0-based timestep t. x_t for timestep t is
    q_sample with noise normal(fold_in(key, t)). `eps_fn(x [n, ...], t int32 [n]) -> ε [n, ...]`."""
    c = {k: jnp.asarray(v, jnp.float32) for k, v in bound_coefficients(schedule, variance).items()}
    n, axes, T = x0.shape[0], tuple(range(1, x0.ndim)), len(schedule["betas"])
    ab_last = c["alpha_bar"][T - 1]
    prior = normal_kl(jnp.sqrt(ab_last) * x0, jnp.log1p(-ab_last), 0.0, 0.0).sum(axes)

    def term(_, t):
        ab = c["alpha_bar"][t]
        eps = jax.random.normal(jax.random.fold_in(key, t), x0.shape)
        xt = jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps
        eps_hat = eps_fn(xt, jnp.full((n,), t, jnp.int32))
        x0_hat = jnp.clip((xt - jnp.sqrt(1.0 - ab) * eps_hat) / jnp.sqrt(ab), -1.0, 1.0)
        mean = c["coef_x0"][t] * x0_hat + c["coef_xt"][t] * xt
        true_mean = c["coef_x0"][t] * x0 + c["coef_xt"][t] * xt
        kl = normal_kl(true_mean, c["post_logvar"][t], mean, c["model_logvar"][t]).sum(axes)
        nll = -discretized_gaussian_log_likelihood(x0, mean, 0.5 * c["model_logvar"][t]).sum(axes)
        return None, jnp.where(t == 0, nll, kl)

    _, terms = jax.lax.scan(term, None, jnp.arange(T))
    return prior, terms.T


def check_8bit(images, what: str) -> None:
    """ValueError naming `what` unless `images` (in [0, 1]) are 8-bit values / 255, the grid L_0 is discretized on."""
    grid = np.asarray(images, np.float64) * 255.0
    if np.abs(grid - np.round(grid)).max() > 1e-3 or grid.min() < -1e-3 or grid.max() > 255.001:
        raise ValueError(
            f"diffusion_nll: {what} images must be 8-bit values / 255 in [0, 1] (the decoder is discretized on "
            f"256 levels); got values in [{grid.min() / 255:.4g}, {grid.max() / 255:.4g}] off that grid"
        )


class Evaluator(BaseEvaluator):
    """Options: num_examples (first images of the split; 0 = all), batch_size, variance ("small" | "large"),
    seed (of the x_t draws; batch i uses fold_in(key, i))."""

    def __init__(
        self,
        ctx: Context,
        *,
        num_examples: int = 500,
        batch_size: int = 100,
        variance: str = "small",
        seed: int = 0,
        **common,
    ):
        super().__init__(ctx, **common)
        task = ctx.task
        if not hasattr(task, "schedule") or not hasattr(task, "timesteps"):
            raise ValueError(f"diffusion_nll needs the diffusion task, not {ctx.config.task.name!r}")
        if num_examples < 0 or batch_size < 1:
            raise ValueError(f"num_examples={num_examples} must be >= 0 and batch_size={batch_size} >= 1")
        bound_coefficients(task.schedule, variance)  # names a bad variance before anything compiles
        self.num_examples, self.batch_size = num_examples, batch_size
        self.pixels = math.prod(ctx.ds_info["input_shape"])
        key = jax.random.key(seed)

        def step(params, rest, batch, index):
            x = batch["input"].astype(jnp.float32)
            with ctx.trace_context():
                model = nnx.merge(ctx.graphdef, params, rest)
                eps_fn = lambda v, t: model(v, t, train=False)
                prior, terms = vlb_terms(eps_fn, 2.0 * x - 1.0, jax.random.fold_in(key, index), task.schedule, variance)
            w = batch["mask"].astype(jnp.float32)
            s = lambda v: jnp.sum(v * w)
            return {"prior": s(prior), "decoder": s(terms[:, 0]), "diffusion": s(terms[:, 1:].sum(1)), "n": s(1)}

        self._eval = jax.jit(
            step,
            in_shardings=(ctx.param_sharding, ctx.rest_sharding, ctx.batch_sharding, None),
            out_shardings=NamedSharding(ctx.mesh, PartitionSpec()),
        )

    def run(self, params, rest) -> dict[str, float]:
        sums, seen = None, 0
        for i, batch in enumerate(self.ctx.batches(self.split, self.batch_size)):
            if self.num_examples and seen >= self.num_examples:
                break
            if self.num_examples:  # mask the rows past num_examples
                keep = np.arange(seen, seen + self.batch_size) < self.num_examples
                mask = np.asarray(jax.device_get(batch["mask"])) * keep
                batch = dict(batch, mask=jax.device_put(mask.astype(np.float32), self.ctx.batch_sharding))
            check_8bit(jax.device_get(batch["input"]), f"split {self.split!r}")
            out = self._eval(params, rest, batch, jnp.int32(i))
            sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
            seen += self.batch_size
        sums = {k: float(v) for k, v in jax.device_get(sums).items()}
        to_bpd = 1.0 / (sums["n"] * math.log(2.0) * self.pixels)
        out = {f"{k}_bpd": sums[k] * to_bpd for k in ("prior", "decoder", "diffusion")}
        total = sums["prior"] + sums["decoder"] + sums["diffusion"]
        out |= {"bits_per_dim": total * to_bpd, "nats": total / sums["n"], "n": sums["n"]}
        return out
