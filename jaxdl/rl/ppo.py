"""The PPO objective (Schulman et al. 2017) on a minibatch: clipped surrogate, (optionally clipped) value loss and
entropy bonus, as in CleanRL's ppo.py (`clip_vloss`, per-minibatch advantage normalization)."""

import jax
import jax.numpy as jnp


def ppo_loss(
    logits: jax.Array,
    value: jax.Array,
    batch: dict,
    *,
    clip_eps: float,
    vf_coef: float,
    ent_coef: float,
    clip_value: bool = True,
    normalize_advantages: bool = True,
) -> tuple[jax.Array, dict]:
    """(loss, metrics) for policy logits float32 [B, A] and value float32 [B] on `batch` = {"action" int32 [B],
    "log_prob" / "value" / "advantage" / "return" float32 [B]} (log_prob, value: of the policy that acted).

    loss = -E[min(rho A, clip(rho, 1-eps, 1+eps) A)] + vf_coef * 0.5 E[max((V-R)^2, (V_old + clip(V-V_old)-R)^2)]
           - ent_coef * E[H(pi)],  rho = pi(a|s) / pi_old(a|s); without clip_value the value term is 0.5 E[(V-R)^2].
    """
    logp_all = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    logp = jnp.take_along_axis(logp_all, batch["action"][:, None].astype(jnp.int32), axis=-1)[:, 0]
    log_ratio = logp - batch["log_prob"]
    ratio = jnp.exp(log_ratio)
    adv = batch["advantage"]
    if normalize_advantages:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    pg_loss = -jnp.mean(jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv))
    v_loss_plain = (value - batch["return"]) ** 2
    if clip_value:
        v_clipped = batch["value"] + jnp.clip(value - batch["value"], -clip_eps, clip_eps)
        v_loss = 0.5 * jnp.mean(jnp.maximum(v_loss_plain, (v_clipped - batch["return"]) ** 2))
    else:
        v_loss = 0.5 * jnp.mean(v_loss_plain)
    entropy = -jnp.mean(jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1))
    loss = pg_loss + vf_coef * v_loss - ent_coef * entropy
    metrics = {
        "policy_loss": pg_loss,
        "value_loss": v_loss,
        "entropy": entropy,
        "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),  # CleanRL's k3 estimator
        "clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32)),
    }
    return loss, metrics
