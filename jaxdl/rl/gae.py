"""Generalized advantage estimation (Schulman et al. 2016) over a rollout, as a reverse `lax.scan`.

Written here (not taken from a library) because rlax's version takes one trajectory with per-step discounts and
no batch axis; this one is the PPO convention of CleanRL/PureJaxRL: `done[t]` means the episode ended on step t,
so V(s_{t+1}) is not bootstrapped across it."""

import jax
import jax.numpy as jnp


def gae(
    reward: jax.Array,
    value: jax.Array,
    done: jax.Array,
    last_value: jax.Array,
    gamma: float,
    lam: float,
) -> tuple[jax.Array, jax.Array]:
    """(advantage, return), both float32 [T, N], from reward / value float32 [T, N], done bool [T, N] and the value
    of the observation after the last step, last_value float32 [N].

    delta_t = r_t + gamma V_{t+1} (1 - done_t) - V_t;  A_t = delta_t + gamma lam (1 - done_t) A_{t+1};  R_t = A_t + V_t.
    """
    if not (reward.shape == value.shape == done.shape and last_value.shape == reward.shape[1:]):
        raise ValueError(
            f"gae: reward {reward.shape}, value {value.shape}, done {done.shape} must be [T, N] and last_value "
            f"{last_value.shape} [N]"
        )
    not_done = 1.0 - done.astype(jnp.float32)
    next_value = jnp.concatenate([value[1:], last_value[None]], axis=0)

    def body(next_adv, xs):
        r, v, nv, nd = xs
        delta = r + gamma * nv * nd - v
        adv = delta + gamma * lam * nd * next_adv
        return adv, adv

    _, adv = jax.lax.scan(body, jnp.zeros_like(last_value), (reward, value, next_value, not_done), reverse=True)
    return adv, adv + value
