"""Adversarial attacks on image classifiers: FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018), L∞ and L2.

Units. The models see normalized inputs x = (p - mean) / std of pixels p in [0, 1] (e.g. Fashion-MNIST:
`(image / 255 - 0.2860) / 0.3530`, `jaxdl.data.fashion_mnist.preprocess`). Attack budgets ε are stated in *pixel*
units, as in the literature (ε = 0.1 on Fashion-MNIST is 10 % of the pixel range), and the valid input range is the
image range p in [0, 1]. The attacks therefore run in pixel space: p = clip(x · std + mean, 0, 1), perturb and
project p, and hand the model (p + δ - mean) / std. In model units an L∞ (or L2) budget ε is ε / std and the valid
range is [-mean / std, (1 - mean) / std] per coordinate (`InputSpace.model_range`).

Projection. After every step δ is projected onto the ε-ball (L∞: clip each coordinate to [-ε, ε]; L2: rescale to
norm ≤ ε) and then onto the image box (δ = clip(p + δ, 0, 1) - p). The box clip only shrinks |δ_i|, so the result
lies in both sets (for L∞ it is the exact projection onto the intersection; for L2 a feasible point of it, the usual
choice of Madry et al.'s and advertorch's code).
"""

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

NORMS = ("linf", "l2")
ATTACKS = ("pgd", "fgsm")

# loss_fn(x_model [batch, ...] float32, labels [batch] int32) -> per-example losses [batch] float32
PerExampleLoss = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class InputSpace:
    """The map between pixels p in [0, 1] and model inputs x = (p - mean) / std (scalar mean and std)."""

    mean: float
    std: float

    def to_pixels(self, x: jax.Array) -> jax.Array:
        return jnp.clip(x * self.std + self.mean, 0.0, 1.0)

    def to_model(self, p: jax.Array) -> jax.Array:
        return (p - self.mean) / self.std

    @property
    def model_range(self) -> tuple[float, float]:
        """The valid input range in model units: the images of pixels 0 and 1."""
        return (0.0 - self.mean) / self.std, (1.0 - self.mean) / self.std


def input_space(dataset: str, key: str = "config.data.name") -> InputSpace:
    """The pixel normalization of `dataset` (a `jaxdl.data` name), from the dataset module's own constants."""
    from jaxdl.data import digits, fashion_mnist

    spaces = {
        "fashion_mnist": (fashion_mnist.MEAN, fashion_mnist.STD),
        # 2x2 average pooling of normalized pixels = normalization of the pooled pixels: the same map
        "fashion_mnist_14": (fashion_mnist.MEAN, fashion_mnist.STD),
        "digits": (digits.MEAN, digits.STD),
    }
    if dataset not in spaces:
        raise ValueError(
            f"{key}={dataset!r}: attacks need an image dataset with a known pixel normalization, one of {sorted(spaces)}"
        )
    return InputSpace(*spaces[dataset])


def check_epsilon(eps: float, norm: str, input_shape: tuple[int, ...], key: str) -> None:
    """ε must be a pixel-unit budget inside the image range: L∞ in [0, 1] (ε ≥ 1 lets any image become any other),
    L2 in [0, sqrt(d)] (the diameter of [0, 1]^d)."""
    if norm not in NORMS:
        raise ValueError(f"{key}: norm={norm!r} is not one of {NORMS}")
    limit = 1.0 if norm == "linf" else math.sqrt(math.prod(input_shape))
    if not (isinstance(eps, int | float) and 0.0 <= eps <= limit):
        raise ValueError(
            f"{key}={eps!r} is outside the image range: ε is in pixel units (images in [0, 1], inputs normalized "
            f"by the dataset's mean/std) and must lie in [0, {limit:g}] for norm={norm!r}"
        )


def _norm(v: jax.Array) -> jax.Array:
    """Per-example L2 norms of `v` [batch, ...] -> [batch, 1, ...] (broadcastable against v)."""
    flat = v.reshape(v.shape[0], -1)
    return jnp.sqrt(jnp.sum(flat * flat, axis=1)).reshape((-1,) + (1,) * (v.ndim - 1))


def project(p: jax.Array, delta: jax.Array, eps: float, norm: str) -> jax.Array:
    """δ projected onto the ε-ball of `norm`, then into the image box: p + δ in [0, 1]. p, δ: [batch, ...] pixels."""
    if norm == "linf":
        delta = jnp.clip(delta, -eps, eps)
    else:
        n = _norm(delta)
        delta = delta * jnp.minimum(1.0, eps / jnp.maximum(n, 1e-12))
    return jnp.clip(p + delta, 0.0, 1.0) - p


def _random_start(key: jax.Array, shape: tuple[int, ...], eps: float, norm: str) -> jax.Array:
    """A uniform point of the ε-ball per example: L∞ uniform in the cube; L2 uniform in the ball (direction from a
    Gaussian, radius ε·u^(1/d))."""
    if norm == "linf":
        return jax.random.uniform(key, shape, minval=-eps, maxval=eps)
    kd, kr = jax.random.split(key)
    d = math.prod(shape[1:])
    g = jax.random.normal(kd, shape)
    r = eps * jax.random.uniform(kr, (shape[0],) + (1,) * (len(shape) - 1)) ** (1.0 / d)
    return g / jnp.maximum(_norm(g), 1e-12) * r


def _ascent(g: jax.Array, norm: str) -> jax.Array:
    """The steepest-ascent direction of unit `norm`: sign(g) (L∞) or g / ||g||_2 (L2)."""
    return jnp.sign(g) if norm == "linf" else g / jnp.maximum(_norm(g), 1e-12)


def pgd(
    loss_fn: PerExampleLoss,
    x: jax.Array,
    labels: jax.Array,
    key: jax.Array | None,
    space: InputSpace,
    *,
    eps: float,
    steps: int,
    step_size: float,
    norm: str = "linf",
    random_start: bool = True,
) -> jax.Array:
    """Projected gradient ascent on the summed per-example loss, inside the pixel ε-ball and the image range.

    x: normalized inputs [batch, ...] float32; labels [batch] int32; key: random start (None iff not random_start).
    eps, step_size in pixel units. Returns adversarial normalized inputs of x's shape. eps == 0 returns the clean
    inputs (clipped to the image range). `steps` and the Python floats are static (unrolled in a fori_loop)."""
    p = space.to_pixels(x.astype(jnp.float32))
    if eps == 0:
        return space.to_model(p).astype(x.dtype)
    if random_start:
        delta = project(p, _random_start(key, p.shape, eps, norm), eps, norm)
    else:
        delta = jnp.zeros_like(p)
    grad = jax.grad(lambda d: jnp.sum(loss_fn(space.to_model(p + d), labels)))

    def body(_, delta):
        return project(p, delta + step_size * _ascent(grad(delta), norm), eps, norm)

    delta = jax.lax.fori_loop(0, steps, body, delta)
    return space.to_model(p + delta).astype(x.dtype)


def fgsm(
    loss_fn: PerExampleLoss, x: jax.Array, labels: jax.Array, space: InputSpace, *, eps: float, norm: str = "linf"
) -> jax.Array:
    """The fast gradient (sign) method: one step of size ε from the clean input (L2: the fast gradient method of
    Goodfellow et al. with the L2-normalized gradient), projected into the image range."""
    return pgd(loss_fn, x, labels, None, space, eps=eps, steps=1, step_size=eps, norm=norm, random_start=False)


def attack(
    name: str,
    loss_fn: PerExampleLoss,
    x: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    space: InputSpace,
    *,
    eps: float,
    norm: str,
    steps: int,
    step_size: float,
    random_start: bool,
) -> jax.Array:
    """`pgd` or `fgsm` by name (the evaluator's and the adversarial task's `attack` option)."""
    if name == "fgsm":
        return fgsm(loss_fn, x, labels, space, eps=eps, norm=norm)
    if name == "pgd":
        return pgd(
            loss_fn,
            x,
            labels,
            key,
            space,
            eps=eps,
            steps=steps,
            step_size=step_size,
            norm=norm,
            random_start=random_start,
        )
    raise ValueError(f"attack={name!r} is not one of {ATTACKS}")


def default_step_size(eps: float, steps: int) -> float:
    """Madry et al.'s rule of thumb: 2.5·ε / steps (PGD can walk across the ball and back)."""
    return 2.5 * eps / max(steps, 1)
