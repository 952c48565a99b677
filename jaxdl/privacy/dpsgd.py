"""DP-SGD's gradient (Abadi et al. 2016) as the gradient of a scalar, so the trainer's ordinary step applies it.

    g̃ = ( Σ_i w_i · clip_C(∇ℓ_i) + N(0, σ²C²·I) ) / B,   clip_C(g) = g · min(1, C / ||g||₂)

ℓ_i is example i's loss, w_i ∈ {0, 1} marks the rows a Poisson sample actually drew (padding rows have w = 0),
B the *expected* batch size q·N (the unbiased normalization of Poisson sampling; dividing by the realized size
would make the sensitivity data-dependent). The noise on g̃ therefore has std σC/B per coordinate.

Why a `custom_vjp` scalar: `jaxdl.state.make_train_step` takes `jax.value_and_grad` of the task's loss w.r.t. the
parameters and hands the gradient to any optax optimizer (NaN guard, EMA, logging included). `dp_objective`
returns the mean loss of the drawn rows in the forward pass and, in the backward pass, the privatized gradient
above instead of the exact one: per-example gradients with `jax.vmap(jax.grad(...))`, clipping, noise. No change
to the step is needed, and the optimizer only post-processes g̃ (DP is closed under post-processing). The cost is
the per-example gradients themselves: memory grows with batch × parameters.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

# example_loss(params, x [*input], y []) -> scalar float32: the loss of ONE example (no batch axis)
ExampleLoss = Callable[..., jax.Array]


def per_example_grads(example_loss: ExampleLoss, params, x: jax.Array, y: jax.Array):
    """Per-example gradients: a params-shaped pytree whose leaves have a leading [batch] axis."""
    return jax.vmap(jax.grad(example_loss), in_axes=(None, 0, 0))(params, x, y)


def per_example_norms(grads) -> jax.Array:
    """[batch] float32 global L2 norms of per-example gradients (leaves [batch, ...])."""
    sq = [jnp.sum(jnp.reshape(g.astype(jnp.float32) ** 2, (g.shape[0], -1)), axis=1) for g in jax.tree.leaves(grads)]
    return jnp.sqrt(sum(sq))


def clip_per_example(grads, clip_norm: float):
    """(clipped grads, [batch] norms before clipping): each example's gradient scaled by min(1, C / ||g_i||)."""
    norms = per_example_norms(grads)
    factor = jnp.minimum(1.0, clip_norm / jnp.maximum(norms, 1e-12))
    return jax.tree.map(lambda g: g * factor.reshape((-1,) + (1,) * (g.ndim - 1)).astype(g.dtype), grads), norms


def noisy_sum(clipped, weights: jax.Array, key: jax.Array, noise_std: float):
    """Σ_i w_i g_i + N(0, noise_std²) per coordinate (one independent draw per leaf, keys split from `key`)."""
    leaves, treedef = jax.tree.flatten(clipped)
    keys = jax.random.split(key, len(leaves))
    out = [
        jnp.tensordot(weights.astype(g.dtype), g, axes=1) + noise_std * jax.random.normal(k, g.shape[1:], g.dtype)
        for g, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(treedef, out)


def dp_objective(
    example_loss: ExampleLoss,
    *,
    clip_norm: float,
    noise_multiplier: float,
    expected_batch_size: float,
) -> Callable:
    """f(params, x [batch, ...], y [batch], w [batch] float32, key_data uint32) -> scalar, whose forward value is
    the mean loss over rows with w = 1 and whose gradient w.r.t. params is DP-SGD's g̃ (module docstring).
    The other arguments get zero cotangents."""

    @jax.custom_vjp
    def f(params, x, y, w, key_data):
        losses = jax.vmap(example_loss, in_axes=(None, 0, 0))(params, x, y)
        return jnp.sum(losses * w) / jnp.maximum(jnp.sum(w), 1.0)

    def fwd(params, x, y, w, key_data):
        return f(params, x, y, w, key_data), (params, x, y, w, key_data)

    def bwd(res, cotangent):
        params, x, y, w, key_data = res
        clipped, _ = clip_per_example(per_example_grads(example_loss, params, x, y), clip_norm)
        key = jax.random.wrap_key_data(key_data)
        total = noisy_sum(clipped, w, key, noise_multiplier * clip_norm)
        grads = jax.tree.map(lambda g, p: (cotangent * g / expected_batch_size).astype(p.dtype), total, params)
        return grads, None, None, None, None

    f.defvjp(fwd, bwd)
    return f


def xent_example_loss(apply: Callable) -> ExampleLoss:
    """ℓ(params, x, y) = cross-entropy of `apply(params, x[None])` [1, classes] against label y."""

    def loss(params, x, y):
        logits = apply(params, x[None]).astype(jnp.float32)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y[None])[0]

    return loss
