"""Attention rollout (Abnar & Zuidema 2020): how much each input token flows into each output token through the
layers, from the per-layer attention probabilities with the residual connection modelled as identity mixing.

Per layer l the heads are fused (mean, as the paper; or max / min), Â_l = r·I + (1 − r)·A_l with r = 0.5 (the
residual), rows renormalized to sum to 1, and the rollout is R = Â_L · … · Â_1 ([batch, L, L]: row i = the share of
each input token in output token i). The probabilities come from the models with `return_attention=True`
([depth, batch, heads, L, L], `jaxdl.layers.attention`'s unfused softmax). Written here: the method is a product of
a few matrices, and no kept JAX library implements it.
"""

import jax
import jax.numpy as jnp

FUSIONS = ("mean", "max", "min")


def rollout(attention: jax.Array, *, residual: float = 0.5, head_fusion: str = "mean") -> jax.Array:
    """attention [depth, batch, heads, L, L] (rows sum to 1) -> rollout [batch, L, L] float32."""
    if attention.ndim != 5 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(f"rollout: attention must be [depth, batch, heads, L, L], got shape {attention.shape}")
    if head_fusion not in FUSIONS:
        raise ValueError(f"rollout: head_fusion={head_fusion!r} is not one of {FUSIONS}")
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"rollout: residual={residual} must be in [0, 1]")
    a = getattr(jnp, head_fusion)(attention.astype(jnp.float32), axis=2)  # [depth, batch, L, L]
    eye = jnp.eye(a.shape[-1], dtype=jnp.float32)
    a = residual * eye + (1.0 - residual) * a
    a = a / jnp.sum(a, axis=-1, keepdims=True)

    def step(r, layer):  # r: the rollout up to the previous layer; new = Â_l · r
        return jnp.einsum("bij,bjk->bik", layer, r, precision=jax.lax.Precision.HIGHEST), None

    out, _ = jax.lax.scan(step, a[0], a[1:])
    return out


def token_relevance(attention: jax.Array, *, cls: bool, **kwargs) -> jax.Array:
    """[batch, tokens]: the rollout row of the class token over the other tokens (cls=True, ViT's class token at 0)
    or the mean of the rows over all tokens (mean pooling) -> relevance of each input token (patch)."""
    r = rollout(attention, **kwargs)
    return r[:, 0, 1:] if cls else jnp.mean(r, axis=1)
