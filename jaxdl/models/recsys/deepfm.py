"""DeepFM (Guo, Tang, Ye, Li & He 2017, "DeepFM: A Factorization-Machine based Neural Network for CTR
Prediction"): a factorization machine and an MLP over the same field embeddings, summed into one logit

    score(u, i) = b + sum_f w_f  +  1/2 sum_d [(sum_f e_fd)^2 - sum_f e_fd^2]  +  MLP([e_1; ...; e_F]),

the pairwise term is sum_{f<g} <e_f, e_g> computed in O(F dim) (Rendle 2010's identity). Seven fields, each an
embedding [dim] and a first-order weight (a bias row):
  - user side, from the batch: user id (int32 [B]), age bucket (decade, "age" int32 [B] in years, clipped to
    0..90+), gender ("gender" int32 [B], 0/1), occupation ("occupation" int32 [B], 0..20);
  - item side, from a fixed catalogue read at construction (`catalogue="movielens"`, non-trainable, as the
    two-tower model does) so that any candidate item can be scored: item id, genres (a multi-hot embedding bag:
    the mean (`pooling="mean"`) or sum of the item's genre embeddings, padded genre ids -1 masked out), release
    year bucket (5-year buckets, 0 = unknown; `two_tower.movielens_catalogue`).
Every lookup goes through `_tables.lookup`; the tables carry ("vocab", "embed") like the other recommenders (see
`jaxdl.models.recsys` for the interface). Trained with `jaxdl.tasks.ranking` loss="bce" (sampled negatives), like
NeuMF. Ids are checked eagerly (outside jit) and a bad one raises ValueError naming the field and the id.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.layers.dtypes import to_dtype
from jaxdl.layers.softmax import Constant
from jaxdl.models.recsys._tables import bias, check_ids, check_sizes, lookup, table
from jaxdl.models.recsys.two_tower import AGE_BUCKETS, YEAR_BUCKETS, movielens_catalogue

NUM_GENDERS, NUM_OCCUPATIONS = 2, 21  # jaxdl.data.movielens: gender 0 F / 1 M, len(OCCUPATIONS)
USER_FIELDS = ("user", "age", "gender", "occupation")
ITEM_FIELDS = ("item", "genres", "year")
FIELDS = USER_FIELDS + ITEM_FIELDS


def genre_ids(genres: np.ndarray) -> np.ndarray:
    """int32 [N, max genres per item]: the genre indices of each item's multi-hot row (float/uint8 [N, G]),
    ascending, right-padded with -1 (the embedding bag's ids)."""
    hot = np.asarray(genres) > 0
    width = max(1, int(hot.sum(1).max(initial=0)))
    out = np.full((hot.shape[0], width), -1, np.int32)
    for n, row in enumerate(hot):
        ids = np.flatnonzero(row)
        out[n, : len(ids)] = ids
    return out


class Model(nnx.Module):
    def __init__(
        self,
        *,
        num_users: int,
        dim: int = 16,
        mlp_dims: tuple = (128, 64),
        dropout: float = 0.0,
        pooling: str = "mean",
        catalogue: str = "movielens",
        init_std: float = 0.01,
        row_multiple: int = 1,
        dtype: str = "float32",
        param_dtype: str = "float32",
        input_shape: tuple[int, ...] = (),
        num_classes: int,
        rngs: nnx.Rngs,
    ):
        check_sizes("deepfm", input_shape, num_users=num_users, num_items=num_classes, dim=dim)
        if catalogue != "movielens":
            raise ValueError(f"config.model.catalogue={catalogue!r}: the only item catalogue is 'movielens'")
        if pooling not in ("mean", "sum"):
            raise ValueError(f"config.model.pooling={pooling!r} is not 'mean' or 'sum'")
        if not 0 <= dropout < 1:
            raise ValueError(f"config.model.dropout={dropout} must be in [0, 1)")
        mlp_dims = tuple(int(d) for d in mlp_dims)
        if not mlp_dims or min(mlp_dims) < 1:
            raise ValueError(f"config.model.mlp_dims={mlp_dims}: needs >= 1 layer of positive width")
        self.num_items, self.dtype, self.dropout, self.pooling = num_classes, dtype, dropout, pooling
        genres, year = movielens_catalogue(num_classes)
        self.genre_ids, self.year = Constant(jnp.asarray(genre_ids(genres))), Constant(jnp.asarray(year))
        self.sizes = dict(
            user=num_users, item=num_classes, age=AGE_BUCKETS, gender=NUM_GENDERS, occupation=NUM_OCCUPATIONS,
            genres=genres.shape[1], year=YEAR_BUCKETS,
        )  # fmt: skip
        big = dict(row_multiple=row_multiple, param_dtype=param_dtype)
        small = dict(row_multiple=1, param_dtype=param_dtype)
        for f in FIELDS:
            kw = big if f in ("user", "item") else small
            setattr(self, f"{f}_emb", table(self.sizes[f], dim, std=init_std, rngs=rngs, **kw))
            setattr(self, f"{f}_w", bias(self.sizes[f], **kw))
        self.global_bias = nnx.Param(jnp.zeros((), to_dtype(param_dtype)))
        lin = dict(dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
        widths = (len(FIELDS) * dim, *mlp_dims)
        self.layers = nnx.List(
            [
                nnx.Linear(a, b, kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ("embed", "mlp")),
                           bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("mlp",)), **lin)
                for a, b in zip(widths[:-1], widths[1:], strict=True)
            ]
        )  # fmt: skip
        self.out = nnx.Linear(
            mlp_dims[-1], 1, kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ("mlp", "embed")), **lin
        )

    def field_ids(self, user, items, *, age, gender, occupation, **inputs) -> dict[str, jax.Array]:
        """The ids of each field: user-side int [B], item-side int [B, C] (genres [B, C, max genres], -1 pad)."""
        return dict(
            user=user, age=jnp.clip(age // 10, 0, AGE_BUCKETS - 1), gender=gender, occupation=occupation, item=items,
            genres=jnp.take(self.genre_ids[...], items, axis=0), year=jnp.take(self.year[...], items, axis=0),
        )  # fmt: skip

    def fields(self, user, items, **inputs) -> tuple[jax.Array, jax.Array]:
        """(embeddings float [B, C, F, dim], first-order weights float [B, C, F]) of the F = 7 fields in
        `FIELDS` order, user-side fields broadcast over the C candidates."""
        fields = dict(user=user, item=items, **{k: inputs[k] for k in ("gender", "occupation") if k in inputs})
        for name, ids in fields.items():
            check_ids("deepfm", ids, self.sizes[name], name)
        ids = self.field_ids(user, items, **inputs)
        b, c = items.shape
        embs, ws = [], []
        for f in FIELDS:
            if f == "genres":  # embedding bag over the item's genres
                g = ids[f]
                real = (g >= 0).astype(to_dtype(self.dtype))
                e = jnp.sum(lookup(self.genres_emb, jnp.maximum(g, 0), self.dtype) * real[..., None], -2)
                w = jnp.sum(lookup(self.genres_w, jnp.maximum(g, 0), self.dtype) * real, -1)
                if self.pooling == "mean":
                    count = jnp.maximum(jnp.sum(real, -1), 1.0)
                    e, w = e / count[..., None], w / count
            else:
                e = lookup(getattr(self, f"{f}_emb"), ids[f], self.dtype)
                w = lookup(getattr(self, f"{f}_w"), ids[f], self.dtype)
            if f in USER_FIELDS:
                e, w = jnp.broadcast_to(e[:, None, :], (b, c, e.shape[-1])), jnp.broadcast_to(w[:, None], (b, c))
            embs.append(e)
            ws.append(w)
        return jnp.stack(embs, -2), jnp.stack(ws, -1)

    def score(self, user: jax.Array, items: jax.Array, *, train: bool = False, rngs=None, **inputs) -> jax.Array:
        """float32 [B, C] logits for user int [B], items int [B, C] and the batch's age / gender / occupation
        int [B]: first order + FM pairwise + MLP."""
        e, w = self.fields(user, items, **inputs)
        first = self.global_bias[...].astype(e.dtype) + jnp.sum(w, -1)
        s = jnp.sum(e, -2)
        pairwise = 0.5 * jnp.sum(s * s - jnp.sum(e * e, -2), -1)
        h = e.reshape(*e.shape[:-2], -1)
        for layer in self.layers:
            h = jax.nn.relu(layer(h))
            if train and self.dropout > 0:
                keep = jax.random.bernoulli(rngs.dropout(), 1 - self.dropout, h.shape)
                h = jnp.where(keep, h / (1 - self.dropout), 0)
        return (first + pairwise + self.out(h)[..., 0]).astype(jnp.float32)

    def score_all(self, user: jax.Array, *, train: bool = False, rngs=None, **inputs) -> jax.Array:
        """float32 [B, num_items]: every catalogue item scored for each user."""
        items = jnp.broadcast_to(jnp.arange(self.num_items)[None, :], (user.shape[0], self.num_items))
        return self.score(user, items, **inputs)

    def __call__(self, user: jax.Array, *, item: jax.Array, train: bool = False, rngs=None, **inputs) -> jax.Array:
        return self.score(user, item[:, None], train=train, rngs=rngs, **inputs)[:, 0]

    def l2(self, user: jax.Array, items: jax.Array) -> jax.Array:
        """float32 [B]: squared norms of the user and item id embedding rows the (user, items) pairs use."""
        return jnp.sum(lookup(self.user_emb, user) ** 2, -1) + jnp.sum(lookup(self.item_emb, items) ** 2, (-2, -1))
