"""Matrix factorization. `biases=True`: biased MF (Koren, Bell & Volinsky 2009; Surprise's SVD),
r(u, i) = mu + b_u + b_i + p_u . q_i, trained on explicit ratings by MSE + L2 (`jaxdl.tasks.rating`).
`biases=False`: p_u . q_i, BPR-MF (Rendle et al. 2009) with `jaxdl.tasks.ranking` loss="bpr".

Parameters: user table p [num_users, dim], item table q [num_items, dim] (N(0, init_std^2), Surprise's default
0.1), user / item biases [rows] and the global offset mu (initialised to `global_mean`, e.g. the train mean
rating 3.53; Surprise fixes mu at the train mean, here it is learned and not regularized). See
`jaxdl.models.recsys` for the interface and sharding.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models.recsys._tables import bias, check_sizes, lookup, table


class Model(nnx.Module):
    def __init__(
        self,
        *,
        num_users: int,
        dim: int = 64,
        biases: bool = True,
        init_std: float = 0.1,
        global_mean: float = 0.0,
        row_multiple: int = 1,
        dtype: str = "float32",
        param_dtype: str = "float32",
        input_shape: tuple[int, ...] = (),
        num_classes: int,
        rngs: nnx.Rngs,
    ):
        check_sizes("mf", input_shape, num_users=num_users, num_items=num_classes, dim=dim)
        self.num_users, self.num_items, self.biases, self.dtype = num_users, num_classes, biases, dtype
        kw = dict(row_multiple=row_multiple, param_dtype=param_dtype)
        self.user_emb = table(num_users, dim, std=init_std, rngs=rngs, **kw)
        self.item_emb = table(num_classes, dim, std=init_std, rngs=rngs, **kw)
        if biases:
            self.user_bias, self.item_bias = bias(num_users, **kw), bias(num_classes, **kw)
            self.mu = nnx.Param(jnp.full((), global_mean, jnp.float32))

    def score(self, user: jax.Array, items: jax.Array, **inputs) -> jax.Array:
        """float32 [B, C] for user int [B], items int [B, C]."""
        p, q = lookup(self.user_emb, user, self.dtype), lookup(self.item_emb, items, self.dtype)
        s = jnp.einsum("bd,bcd->bc", p, q).astype(jnp.float32)
        if self.biases:
            s = s + self.mu[...] + lookup(self.user_bias, user)[:, None] + lookup(self.item_bias, items)
        return s

    def score_all(self, user: jax.Array, **inputs) -> jax.Array:
        """float32 [B, num_items]: one [B, dim] x [dim, num_items] matmul."""
        p = lookup(self.user_emb, user, self.dtype)
        q = self.item_emb[...][: self.num_items].astype(p.dtype)
        s = (p @ q.T).astype(jnp.float32)
        if self.biases:
            s = s + self.mu[...] + lookup(self.user_bias, user)[:, None] + self.item_bias[...][None, : self.num_items]
        return s

    def __call__(self, user: jax.Array, *, item: jax.Array, train: bool = False, rngs=None, **inputs) -> jax.Array:
        """float32 [B]: the predicted rating (biased) or score of (user[b], item[b])."""
        return self.score(user, item[:, None])[:, 0]

    def l2(self, user: jax.Array, items: jax.Array) -> jax.Array:
        """float32 [B]: ||p_u||^2 + sum_c ||q_{i_c}||^2 (+ b_u^2 + sum_c b_{i_c}^2) for items int [B, C]."""
        p, q = lookup(self.user_emb, user), lookup(self.item_emb, items)
        out = jnp.sum(p**2, -1) + jnp.sum(q**2, (-2, -1))
        if self.biases:
            out = out + lookup(self.user_bias, user) ** 2 + jnp.sum(lookup(self.item_bias, items) ** 2, -1)
        return out
