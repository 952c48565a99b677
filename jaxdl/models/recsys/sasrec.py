"""SASRec (Kang & McAuley 2018, "Self-Attentive Sequential Recommendation"): the user is the sequence of their
last L items; a causal transformer (the project's `jaxdl.layers.attention.Attention` + `Mlp`, pre-LN blocks)
over item + learned position embeddings, and the output at the most recent position h_u scores item i by
h_u . e_i with the same (shared) item embeddings. Train with `jaxdl.tasks.next_items` (a loss at every position
of history + positive, as Kang & McAuley do; `sequence` gives the outputs of all positions), or with
`jaxdl.tasks.ranking` loss="softmax" (the last position only, RecBole's prefix-per-example `loss_type="CE"`) on
rows whose "history" holds the items before the positive (`jaxdl.data.movielens` LOO: int32 [B, 50], left-padded
with -1).

Padding (-1) positions embed as zeros (plus their position embedding) and are visible to the causal attention of
later positions, as in the reference implementation without its key mask; the last position is always the most
recent real item (left padding), or padding only for a user's first interaction. Item table [num_items, dim]
("vocab", "embed"); position table [max_len, dim]. See `jaxdl.models.recsys` for the interface; `user` ids are
not used (SASRec is user-id free).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.attention import Attention
from jaxdl.layers.dtypes import to_dtype
from jaxdl.layers.mlp import Mlp
from jaxdl.models.recsys._tables import check_sizes, lookup, table


class Block(nnx.Module):
    """Pre-LN transformer block [B, L, dim] -> [B, L, dim]: causal (SASRec) or bidirectional with padding keys
    masked (BERT4Rec)."""

    def __init__(
        self, dim: int, heads: int, hidden: int, dropout: float, dtype: str, param_dtype: str, rngs: nnx.Rngs,
        causal: bool = True,
    ):  # fmt: skip
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.ln1 = nnx.LayerNorm(dim, dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
        self.attn = Attention(dim, heads, causal=causal, **kw)
        self.ln2 = nnx.LayerNorm(dim, dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
        self.mlp = Mlp(dim, hidden, dropout=dropout, **kw)
        self.drop = nnx.Dropout(dropout)

    def __call__(self, x: jax.Array, *, train: bool, rngs, key_mask: jax.Array | None = None) -> jax.Array:
        a = self.attn(self.ln1(x), key_mask=key_mask, train=train, rngs=rngs)
        x = x + self.drop(a, deterministic=not train, rngs=rngs)
        return x + self.mlp(self.ln2(x), train=train, rngs=rngs)


class Model(nnx.Module):
    name = "sasrec"
    causal = True  # BERT4Rec (a subclass) attends both ways and masks padding keys
    extra_rows = 0  # item-table rows past the catalogue (BERT4Rec: its [mask] token)

    def __init__(
        self,
        *,
        num_users: int,
        dim: int = 64,
        depth: int = 2,
        heads: int = 2,
        mlp_dim: int = 256,
        max_len: int = 50,
        dropout: float = 0.2,
        init_std: float = 0.02,
        row_multiple: int = 1,
        dtype: str = "float32",
        param_dtype: str = "float32",
        input_shape: tuple[int, ...] = (),
        num_classes: int,
        rngs: nnx.Rngs,
    ):
        del num_users  # user-id free; kept so every recsys config has the same keys
        check_sizes(self.name, input_shape, num_items=num_classes, dim=dim)
        self.num_items, self.max_len, self.dtype = num_classes, max_len, dtype
        rows = num_classes + self.extra_rows
        self.item_emb = table(rows, dim, std=init_std, row_multiple=row_multiple, param_dtype=param_dtype, rngs=rngs)
        self.pos_emb = nnx.Param(
            nnx.initializers.normal(init_std)(rngs.params(), (max_len, dim), to_dtype(param_dtype))
        )
        self.blocks = nnx.List(
            [Block(dim, heads, mlp_dim, dropout, dtype, param_dtype, rngs, self.causal) for _ in range(depth)]
        )
        self.ln = nnx.LayerNorm(dim, dtype=to_dtype(dtype), param_dtype=to_dtype(param_dtype), rngs=rngs)
        self.drop = nnx.Dropout(dropout)

    def sequence(self, history: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        """float [B, L, dim]: the transformer's output at every position of history int [B, L] (L <= max_len,
        -1 = padding); position t has seen items 0..t only (causal), so it predicts item t+1."""
        if history.ndim != 2 or history.shape[1] > self.max_len:
            raise ValueError(f"history {history.shape} must be [batch, length <= max_len={self.max_len}]")
        real = (history >= 0)[..., None]
        x = jnp.where(real, lookup(self.item_emb, jnp.maximum(history, 0), self.dtype), 0)
        x = x * jnp.sqrt(x.shape[-1]).astype(x.dtype) + self.pos_emb[...][-history.shape[1] :].astype(x.dtype)
        x = self.drop(x, deterministic=not train, rngs=rngs)
        key_mask = None if self.causal else history >= 0
        for block in self.blocks:
            x = block(x, train=train, rngs=rngs, key_mask=key_mask)
        return self.ln(x)

    def user_vector(self, history: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        """float [B, dim]: the transformer's output at the last position of history int [B, L] (L <= max_len)."""
        return self.sequence(history, train=train, rngs=rngs)[:, -1]

    def item_vectors(self, items: jax.Array) -> jax.Array:
        """float [..., dim]: the (shared input/output) embeddings of items int [...]."""
        return lookup(self.item_emb, items, self.dtype)

    def catalogue_logits(self, h: jax.Array) -> jax.Array:
        """float32 [..., num_items]: h [..., dim] scored against every item's embedding."""
        return (h @ self.item_emb[...][: self.num_items].astype(h.dtype).T).astype(jnp.float32)

    def score(self, user, items, *, history, train: bool = False, rngs=None, **inputs) -> jax.Array:
        """float32 [B, C] for items int [B, C] given history int [B, L]."""
        h = self.user_vector(history, train=train, rngs=rngs)
        return jnp.einsum("bd,bcd->bc", h, lookup(self.item_emb, items, self.dtype)).astype(jnp.float32)

    def score_all(self, user, *, history, train: bool = False, rngs=None, **inputs) -> jax.Array:
        """float32 [B, num_items]."""
        return self.catalogue_logits(self.user_vector(history, train=train, rngs=rngs))

    def __call__(self, user, *, item, history, train: bool = False, rngs=None, **inputs) -> jax.Array:
        return self.score(user, item[:, None], history=history, train=train, rngs=rngs)[:, 0]

    def l2(self, user, items) -> jax.Array:
        """float32 [B]: squared norms of the candidate items' embeddings."""
        return jnp.sum(lookup(self.item_emb, items) ** 2, (-2, -1))
