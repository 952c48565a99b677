"""Two-tower retrieval model (Covington et al. 2016; Yi et al. 2019, "Sampling-bias-corrected neural modeling"):
score(u, i) = <f(u), g(i)> / temperature with L2-normalised tower outputs.

- user tower f: user-id embedding, the mean embedding of the user's history items ("history" int32 [B, L], -1
  padding), and embeddings of age decade, gender and occupation (batch "age", "gender", "occupation" int32 [B]),
  concatenated -> Linear -> ReLU -> Linear -> [B, dim];
- item tower g: item-id embedding, genres multi-hot [19] @ W and a release-year embedding (5-year buckets from
  1920, one bucket for unknown) -> Linear -> ReLU -> Linear. The genres / years of every item are a fixed catalogue
  read from `jaxdl.data.movielens` at construction (`catalogue="movielens"`; non-trainable variables), so any
  candidate item can be scored without features in the batch.

Trained with `jaxdl.tasks.ranking` loss="in_batch": the other rows' positives are the negatives, with the logQ
correction logit - log(B p_j) where p_j is item j's frequency in the training stream (`item_log_q`, from the
train split's label counts via `jaxdl.layers.softmax.proposal_probs("unigram", power=1)`), the expected count of j
among B in-batch draws (`jaxdl.layers.softmax.expected_counts`). Tables: ("vocab", "embed") as the other
recommenders (see `jaxdl.models.recsys`).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.layers.dtypes import to_dtype
from jaxdl.layers.softmax import Constant, proposal_probs
from jaxdl.models.recsys._tables import check_sizes, lookup, table

AGE_BUCKETS, YEAR_BUCKETS = 10, 18  # decades 0..90+; (year - 1920) // 5 clipped to 1..16, 0 = unknown


def movielens_catalogue(num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(genres float32 [N, 19], year bucket int32 [N]) of MovieLens-100k."""
    from jaxdl.data import movielens as ml

    data = ml.load_raw()
    if data.num_items != num_items:
        raise ValueError(f"catalogue 'movielens' has {data.num_items} items, the dataset {num_items}")
    year = np.where(data.year > 0, np.clip((data.year - 1920) // 5 + 1, 1, YEAR_BUCKETS - 1), 0)
    return data.genres.astype(np.float32), year.astype(np.int32)


class Tower(nnx.Module):
    def __init__(self, din: int, dim: int, dtype: str, param_dtype: str, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal()
        kw = dict(dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
        self.hidden = nnx.Linear(din, 2 * dim, kernel_init=nnx.with_partitioning(init, ("embed", "mlp")), **kw)
        self.out = nnx.Linear(2 * dim, dim, kernel_init=nnx.with_partitioning(init, ("mlp", "embed")), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.out(jax.nn.relu(self.hidden(x)))
        return h * jax.lax.rsqrt(jnp.sum(h * h, -1, keepdims=True) + 1e-12)


class Model(nnx.Module):
    def __init__(
        self,
        *,
        num_users: int,
        dim: int = 64,
        temperature: float = 0.05,
        catalogue: str = "movielens",
        init_std: float = 0.05,
        row_multiple: int = 1,
        dtype: str = "float32",
        param_dtype: str = "float32",
        input_shape: tuple[int, ...] = (),
        num_classes: int,
        label_counts=None,
        rngs: nnx.Rngs,
    ):
        check_sizes("two_tower", input_shape, num_users=num_users, num_items=num_classes, dim=dim)
        if catalogue != "movielens":
            raise ValueError(f"config.model.catalogue={catalogue!r}: the only item catalogue is 'movielens'")
        if temperature <= 0:
            raise ValueError(f"config.model.temperature={temperature} must be > 0")
        self.num_items, self.temperature, self.dtype = num_classes, temperature, dtype
        genres, year = movielens_catalogue(num_classes)
        self.genres, self.year = Constant(jnp.asarray(genres)), Constant(jnp.asarray(year))
        counts = label_counts() if label_counts is not None else None
        q = proposal_probs("unigram", num_classes, counts, power=1.0) if counts is not None else None
        q = q if q is not None else np.full(num_classes, 1.0 / num_classes)  # no data (e.g. tests): uniform
        self.item_log_q = Constant(jnp.asarray(np.log(q), jnp.float32))
        kw = dict(std=init_std, row_multiple=row_multiple, param_dtype=param_dtype, rngs=rngs)
        self.user_id, self.item_id = table(num_users, dim, **kw), table(num_classes, dim, **kw)
        self.history_item = table(num_classes, dim, **kw)
        # the side-feature tables carry "vocab" rows too, so they are padded like the id tables: a row-sharding rule
        # (("vocab", "data"),) then splits every table evenly (padding rows are never looked up)
        self.age, self.gender = table(AGE_BUCKETS, 8, **kw), table(2, 4, **kw)
        self.occupation, self.year_emb = table(21, 8, **kw), table(YEAR_BUCKETS, 8, **kw)
        init = nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, "embed"))
        self.genre_proj = nnx.Param(init(rngs.params(), (genres.shape[1], 16), to_dtype(param_dtype)))
        self.user_tower = Tower(2 * dim + 8 + 4 + 8, dim, dtype, param_dtype, rngs)
        self.item_tower = Tower(dim + 16 + 8, dim, dtype, param_dtype, rngs)

    def user_vectors(self, user, *, history, age, gender, occupation, **inputs) -> jax.Array:
        """float [B, dim], unit norm."""
        real = (history >= 0).astype(jnp.float32)[..., None]
        hist = jnp.sum(lookup(self.history_item, jnp.maximum(history, 0), self.dtype) * real, 1)
        hist = hist / jnp.maximum(jnp.sum(real, 1), 1.0)
        x = jnp.concatenate(
            [
                lookup(self.user_id, user, self.dtype),
                hist,
                lookup(self.age, jnp.clip(age // 10, 0, AGE_BUCKETS - 1), self.dtype),
                lookup(self.gender, gender, self.dtype),
                lookup(self.occupation, occupation, self.dtype),
            ],
            -1,
        )
        return self.user_tower(x)

    def item_vectors(self, items: jax.Array) -> jax.Array:
        """float [..., dim], unit norm, for item ids int [...]."""
        genres = jnp.take(self.genres[...], items, axis=0) @ self.genre_proj[...].astype(to_dtype(self.dtype))
        year = lookup(self.year_emb, jnp.take(self.year[...], items, axis=0), self.dtype)
        return self.item_tower(jnp.concatenate([lookup(self.item_id, items, self.dtype), genres, year], -1))

    def score(self, user, items, *, train: bool = False, rngs=None, **inputs) -> jax.Array:
        """float32 [B, C] = <f(u), g(i)> / temperature."""
        u = self.user_vectors(user, **inputs)
        return (jnp.einsum("bd,bcd->bc", u, self.item_vectors(items)) / self.temperature).astype(jnp.float32)

    def score_all(self, user, *, train: bool = False, rngs=None, **inputs) -> jax.Array:
        """float32 [B, num_items]: the item tower over the whole catalogue, one matmul."""
        u = self.user_vectors(user, **inputs)
        return ((u @ self.item_vectors(jnp.arange(self.num_items)).T) / self.temperature).astype(jnp.float32)

    def in_batch_logits(self, user, items, **inputs) -> jax.Array:
        """float32 [B, B]: <f(u_b), g(i_j)> / temperature - log(B p_j), items int [B] (row b's positive)."""
        u, v = self.user_vectors(user, **inputs), self.item_vectors(items)
        log_expected = jnp.log(items.shape[0]) + jnp.take(self.item_log_q[...], items)
        return (u @ v.T / self.temperature).astype(jnp.float32) - log_expected[None, :]

    def __call__(self, user, *, item, train: bool = False, rngs=None, **inputs) -> jax.Array:
        return self.score(user, item[:, None], **inputs)[:, 0]

    def l2(self, user, items) -> jax.Array:
        return jnp.sum(lookup(self.user_id, user) ** 2, -1) + jnp.sum(lookup(self.item_id, items) ** 2, (-2, -1))
