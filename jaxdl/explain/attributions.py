"""Gradient saliency (Simonyan et al. 2014) and integrated gradients (Sundararajan et al. 2017) of a classifier.

`logit_fn(x) -> logits` maps inputs [batch, ...] float32 to logits [batch, classes]; examples must not interact
(no batch statistics: call the model with `train=False`), so the gradient of the summed target logits is each
example's own gradient. Attributions are in the model's input units, shaped like x.

Integrated gradients: IG_i(x) = (x_i − x'_i) · ∫₀¹ ∂f_c(x' + α(x − x'))/∂x_i dα for the baseline x', with the
integral approximated on m steps by a Riemann sum (left, right, midpoint) or the trapezoid rule. Completeness:
Σ_i IG_i(x) = f_c(x) − f_c(x') exactly for the integral; the quadrature's gap `completeness_gap` shrinks with m
(O(1/m) for left/right sums, O(1/m²) for midpoint/trapezoid on smooth models) and is the standard check that m is
large enough. Written here (a few lines of jax) because no kept library fits: captum is PyTorch, and PAIR's
`saliency` package calls the model once per step from numpy on the host, which cannot be jitted or sharded.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

LogitFn = Callable[[jax.Array], jax.Array]  # x [batch, ...] -> logits [batch, classes]
RULES = ("trapezoid", "riemann_left", "riemann_right", "riemann_middle")


def target_score(logit_fn: LogitFn, target: jax.Array) -> Callable[[jax.Array], jax.Array]:
    """x -> [batch] logits of class target[b] (int [batch]) of each example."""

    def score(x):
        logits = logit_fn(x).astype(jnp.float32)
        return jnp.take_along_axis(logits, target[:, None].astype(jnp.int32), axis=1)[:, 0]

    return score


def saliency(logit_fn: LogitFn, x: jax.Array, target: jax.Array) -> jax.Array:
    """∂ logit_{target[b]} / ∂x for each example -> float32 like x (display |·| or its max over channels)."""
    score = target_score(logit_fn, target)
    return jax.grad(lambda z: jnp.sum(score(z)))(x.astype(jnp.float32))


def path_weights(steps: int, rule: str = "trapezoid") -> tuple[jax.Array, jax.Array]:
    """(α [n], w [n]) float32 with Σ w = 1: the quadrature of ∫₀¹ g(α) dα ≈ Σ w_k g(α_k) on `steps` intervals
    (trapezoid: steps + 1 nodes; Riemann sums: steps nodes)."""
    if steps < 1:
        raise ValueError(f"integrated gradients: steps={steps} must be >= 1")
    if rule not in RULES:
        raise ValueError(f"integrated gradients: rule={rule!r} is not one of {RULES}")
    m = steps
    if rule == "trapezoid":
        alphas = jnp.linspace(0.0, 1.0, m + 1)
        weights = jnp.full((m + 1,), 1.0 / m).at[0].set(0.5 / m).at[-1].set(0.5 / m)
        return alphas, weights
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[rule]
    return (jnp.arange(m) + offset) / m, jnp.full((m,), 1.0 / m)


def integrated_gradients(
    logit_fn: LogitFn,
    x: jax.Array,
    target: jax.Array,
    baseline: jax.Array | float = 0.0,
    *,
    steps: int = 32,
    rule: str = "trapezoid",
) -> jax.Array:
    """IG attributions float32 like x; `baseline` broadcasts against x (a float: that constant everywhere).
    The path is scanned (memory of one gradient, not `steps`)."""
    x = x.astype(jnp.float32)
    base = jnp.broadcast_to(jnp.asarray(baseline, jnp.float32), x.shape)
    score = target_score(logit_fn, target)
    grad = jax.grad(lambda z: jnp.sum(score(z)))
    alphas, weights = path_weights(steps, rule)

    def body(total, aw):
        a, w = aw
        return total + w * grad(base + a * (x - base)), None

    total, _ = jax.lax.scan(body, jnp.zeros_like(x), (alphas, weights))
    return (x - base) * total


def completeness_gap(
    logit_fn: LogitFn, x: jax.Array, target: jax.Array, attributions: jax.Array, baseline: jax.Array | float = 0.0
) -> tuple[jax.Array, jax.Array]:
    """(Σ attributions − (f_c(x) − f_c(x')) [batch], f_c(x) − f_c(x') [batch]) float32."""
    x = x.astype(jnp.float32)
    base = jnp.broadcast_to(jnp.asarray(baseline, jnp.float32), x.shape)
    score = target_score(logit_fn, target)
    delta = score(x) - score(base)
    return jnp.sum(attributions.reshape(x.shape[0], -1), axis=1) - delta, delta
