"""First-order Taylor importance of output channels / hidden units on calibration batches (Molchanov et al. 2017,
"Pruning convolutional neural networks for resource efficient inference"; 2019, "Importance estimation for neural
network pruning"), for `jaxdl.compress.structured`'s `prune_vgg(..., scores=...)` / `prune_mlp(..., scores=...)`.

Removing channel j of a layer is setting its output scale s_j from 1 to 0. To first order the loss changes by
-∂L/∂s_j at s = 1, and scaling the output channel by s_j is scaling its filter and bias, so

    ∂L/∂s_j = Σ_{θ in kernel[..., j], bias[j]} θ · ∂L/∂θ = Σ_{positions} z_j · ∂L/∂z_j = Σ_{positions} a_j · ∂L/∂a_j

(z the channel's pre-activation over every spatial position, a = relu(z): relu is positively homogeneous, and a 2x2
max pool after it commutes with a positive scale). The last form is Molchanov et al.'s activation × gradient; the
first needs only the parameter gradients, so any model whose layers keep their outputs on the kernel's last axis
works unchanged (no hooks into the forward pass). Per batch b the channel's term is t_j^b = ∂L_b/∂s_j, and the
importance is the mean over the calibration batches of (t_j^b)² ("square", the 2019 paper's group score) or of
|t_j^b| ("abs", the 2017 paper's, up to its per-layer normalization); with batches of one example these are the
per-example forms. Scores are per layer and only compared within a layer (the pruners keep a count per layer), so
no cross-layer normalization is applied.

Why hand-written: no kept library computes a Taylor channel score for JAX models (optax / flax have none); the
computation is one `jax.grad` per batch and a contraction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

REDUCTIONS = ("square", "abs")


def _node(tree: Mapping, path: Sequence) -> Mapping:
    node = tree
    for key in path:
        try:
            node = node[key]
        except (KeyError, TypeError, IndexError):
            raise ValueError(f"layer path {tuple(path)}: no key {key!r} in the params") from None
    if not isinstance(node, Mapping) or "kernel" not in node:
        raise ValueError(
            f"layer path {tuple(path)} holds no 'kernel' (keys: {list(node) if isinstance(node, Mapping) else type(node)})"
        )
    return node


def channel_scale_grads(params: Mapping, grads: Mapping, layers: Sequence[Sequence]) -> list[jax.Array]:
    """Per layer, float32 [out]: ∂L/∂s_j = Σ kernel[..., j] · g_kernel[..., j] + bias[j] · g_bias[j] (the gradient
    of the loss w.r.t. a scale on output channel j; `params` and `grads` are pure dicts of the same structure,
    `layers` paths to dicts with "kernel" [..., out] and optionally "bias" [out])."""
    out = []
    for path in layers:
        p, g = _node(params, path), _node(grads, path)
        k, gk = jnp.asarray(p["kernel"], jnp.float32), jnp.asarray(g["kernel"], jnp.float32)
        t = jnp.sum((k * gk).reshape(-1, k.shape[-1]), axis=0)
        if "bias" in p:
            t = t + jnp.asarray(p["bias"], jnp.float32) * jnp.asarray(g["bias"], jnp.float32)
        out.append(t)
    return out


def taylor_importance(
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Mapping,
    batches: Iterable[Any],
    layers: Sequence[Sequence],
    *,
    reduce: str = "square",
) -> list[np.ndarray]:
    """Per layer of `layers`, float64 [out channels]: mean over `batches` of (∂L_b/∂s_j)² ("square") or |∂L_b/∂s_j|
    ("abs"), L_b = loss_fn(params, batch) (a scalar, e.g. the batch-mean cross-entropy).

    `params`: a pure dict (e.g. `nnx.State.to_pure_dict()`); `layers`: paths into it, e.g. `[("convs", i) for i in
    range(3)]` for a `vgg`, `[("blocks", i, "linear") ...]` for an `mlp`."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce={reduce!r} is not one of {REDUCTIONS}")
    if not layers:
        raise ValueError("layers is empty: name at least one layer path to score")
    for path in layers:
        _node(params, path)  # fail on a bad path before any gradient is computed

    @jax.jit
    def terms(p, batch):
        return channel_scale_grads(p, jax.grad(loss_fn)(p, batch), layers)

    total, n = None, 0
    for batch in batches:
        t = [np.asarray(x, np.float64) for x in terms(params, batch)]
        t = [x**2 if reduce == "square" else np.abs(x) for x in t]
        total = t if total is None else [a + b for a, b in zip(total, t, strict=True)]
        n += 1
    if n == 0:
        raise ValueError("batches is empty: the Taylor score needs at least one calibration batch")
    return [x / n for x in total]
