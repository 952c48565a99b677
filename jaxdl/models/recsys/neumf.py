"""NeuMF (He, Liao, Zhang, Nie, Hu & Chua 2017, "Neural Collaborative Filtering"): a GMF tower p^G_u * q^G_i
(element-wise, `gmf_dim`) and an MLP tower over [p^M_u, q^M_i] (`mlp_dims`, ReLU, e.g. (64, 32, 16): the
paper's halving tower), concatenated into one linear output: score(u, i) = h . [gmf; mlp] + b, a logit (trained
with `jaxdl.tasks.ranking` loss="bce", the paper's log loss with sampled negatives, or "bpr"). Pre-training the
towers separately (the paper's optional step) is not done. Four tables [rows, dim] with logical axes ("vocab",
"embed"); the MLP kernels ("embed", "mlp") / ("mlp", "embed"). See `jaxdl.models.recsys` for the interface.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.dtypes import to_dtype
from jaxdl.models.recsys._tables import check_sizes, lookup, table


class Model(nnx.Module):
    def __init__(
        self,
        *,
        num_users: int,
        gmf_dim: int = 32,
        mlp_dims: tuple = (64, 32, 16),
        init_std: float = 0.01,
        dropout: float = 0.0,
        row_multiple: int = 1,
        dtype: str = "float32",
        param_dtype: str = "float32",
        input_shape: tuple[int, ...] = (),
        num_classes: int,
        rngs: nnx.Rngs,
    ):
        check_sizes("neumf", input_shape, num_users=num_users, num_items=num_classes, gmf_dim=gmf_dim)
        mlp_dims = tuple(int(d) for d in mlp_dims)
        if len(mlp_dims) < 1 or mlp_dims[0] % 2:
            raise ValueError(f"mlp_dims={mlp_dims}: needs >= 1 layer and an even first width (user + item halves)")
        self.num_items, self.dtype, self.dropout = num_classes, dtype, dropout
        kw = dict(std=init_std, row_multiple=row_multiple, param_dtype=param_dtype, rngs=rngs)
        self.user_gmf, self.item_gmf = table(num_users, gmf_dim, **kw), table(num_classes, gmf_dim, **kw)
        half = mlp_dims[0] // 2
        self.user_mlp, self.item_mlp = table(num_users, half, **kw), table(num_classes, half, **kw)
        lin = dict(dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
        self.layers = nnx.List(
            [
                nnx.Linear(a, b, kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ("embed", "mlp")),
                           bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("mlp",)), **lin)
                for a, b in zip(mlp_dims[:-1], mlp_dims[1:], strict=True)
            ]
        )  # fmt: skip
        self.out = nnx.Linear(
            gmf_dim + mlp_dims[-1],
            1,
            kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ("mlp", "embed")),
            **lin,
        )

    def score(self, user: jax.Array, items: jax.Array, *, train: bool = False, rngs=None, **inputs) -> jax.Array:
        """float32 [B, C] logits for user int [B], items int [B, C]."""
        c = items.shape[1]
        gmf = lookup(self.user_gmf, user, self.dtype)[:, None, :] * lookup(self.item_gmf, items, self.dtype)
        pu = lookup(self.user_mlp, user, self.dtype)
        pu = jnp.broadcast_to(pu[:, None, :], (user.shape[0], c, pu.shape[-1]))
        h = jnp.concatenate([pu, lookup(self.item_mlp, items, self.dtype)], axis=-1)
        for layer in self.layers:
            h = jax.nn.relu(layer(h))
            if train and self.dropout > 0:
                keep = jax.random.bernoulli(rngs.dropout(), 1 - self.dropout, h.shape)
                h = jnp.where(keep, h / (1 - self.dropout), 0)
        return self.out(jnp.concatenate([gmf, h], axis=-1))[..., 0].astype(jnp.float32)

    def score_all(self, user: jax.Array, **inputs) -> jax.Array:
        """float32 [B, num_items]: the towers on every (user, item) pair."""
        items = jnp.broadcast_to(jnp.arange(self.num_items)[None, :], (user.shape[0], self.num_items))
        return self.score(user, items)

    def __call__(self, user: jax.Array, *, item: jax.Array, train: bool = False, rngs=None, **inputs) -> jax.Array:
        return self.score(user, item[:, None], train=train, rngs=rngs)[:, 0]

    def l2(self, user: jax.Array, items: jax.Array) -> jax.Array:
        """float32 [B]: squared norms of the four embedding rows the (user, items) pairs use."""
        u = jnp.sum(lookup(self.user_gmf, user) ** 2, -1) + jnp.sum(lookup(self.user_mlp, user) ** 2, -1)
        i = jnp.sum(lookup(self.item_gmf, items) ** 2, (-2, -1)) + jnp.sum(lookup(self.item_mlp, items) ** 2, (-2, -1))
        return u + i
