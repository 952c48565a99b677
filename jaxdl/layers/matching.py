"""Minimum-cost bipartite matching (the Hungarian-matching step of set-prediction detectors such as DETR): rows
(ground-truth objects, M) to distinct columns (predictions / queries, Q >= M).

- `hungarian`: on the host with `scipy.optimize.linear_sum_assignment` (exact; the reference).
- `auction`: in JAX (jit / vmap-able, so matching can stay inside the compiled step), Bertsekas' auction algorithm
  (Gauss-Seidel bidding, one unassigned row bids per iteration, a `lax.while_loop`). With all column prices
  starting at 0 it ends with a matching whose cost is within M x `eps` of the optimum (Bertsekas 1988, also for
  M < Q), so it is the optimum whenever the best and second-best matchings differ by more than M x eps (for
  integer costs: eps < 1 / M gives the exact optimum). Written here because no kept JAX library has one (optax,
  jaxopt and ott-jax solve the entropic relaxation, not the exact assignment).
"""

import jax
import jax.numpy as jnp
import numpy as np


def hungarian(cost: np.ndarray) -> np.ndarray:
    """cost float [M, Q] (M <= Q) -> int64 [M]: the column of each row in a minimum-cost matching (scipy)."""
    from scipy.optimize import linear_sum_assignment

    cost = np.asarray(cost)
    if cost.ndim != 2 or cost.shape[0] > cost.shape[1]:
        raise ValueError(f"cost must be [rows, cols] with rows <= cols, got shape {cost.shape}")
    rows, cols = linear_sum_assignment(cost)
    out = np.empty(cost.shape[0], np.int64)
    out[rows] = cols
    return out


def auction(cost: jax.Array, eps: float = 1e-6, max_iters: int = 100_000) -> jax.Array:
    """cost float [M, Q] (M <= Q, static shapes) -> int32 [M]: each row's column, a matching within M x eps of
    the minimum total cost (see the module docstring). Rows whose cost is +inf everywhere are not supported.
    `max_iters` bounds the loop (returns -1 for rows still unassigned then; never reached in the tests)."""
    m, q = cost.shape
    if m > q:
        raise ValueError(f"auction: cost has {m} rows > {q} columns (each row needs its own column)")
    benefit = -cost.astype(jnp.float32)

    def cond(s):
        assigned, _, _, it = s
        return (assigned < 0).any() & (it < max_iters)

    def body(s):
        assigned, owner, prices, it = s
        p = jnp.argmax(assigned < 0)  # the first unassigned row bids
        v = benefit[p] - prices
        j = jnp.argmax(v)
        v1 = v[j]
        v2 = jnp.max(jnp.where(jnp.arange(q) == j, -jnp.inf, v)) if q > 1 else v1
        prices = prices.at[j].add(v1 - v2 + eps)
        prev = owner[j]
        assigned = jnp.where((jnp.arange(m) == prev) & (prev >= 0), -1, assigned).at[p].set(j)
        owner = owner.at[j].set(p)
        return assigned, owner, prices, it + 1

    init = (jnp.full(m, -1, jnp.int32), jnp.full(q, -1, jnp.int32), jnp.zeros(q, jnp.float32), 0)
    return jax.lax.while_loop(cond, body, init)[0]
