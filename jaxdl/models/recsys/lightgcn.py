"""LightGCN (He et al. 2020, "LightGCN: Simplifying and Powering Graph Convolution Network for Recommendation"):
user and item embeddings propagated over the user-item interaction graph without weights or nonlinearities,
e^(k+1) = Â e^(k) with Â = D^-1/2 A D^-1/2 of the bipartite graph A = [[0, R], [R^T, 0]] (R [users, items] the
training interactions), and the final embedding the layer mean (e^(0) + ... + e^(K)) / (K + 1) (the paper's
alpha_k = 1/(K+1)); score(u, i) = <e_u, e_i>. Propagation is `jaxdl.layers.graph.lightgcn_propagate` over an edge
list (each interaction is two edges, user -> item and item -> user; node ids: users 0..num_users-1, then items).
Trained with `jaxdl.tasks.ranking` loss="bpr"; `l2` is the squared norm of the layer-0 ("ego") embeddings of the
pairs, the paper's regularizer (its decay lambda = 2 * config.task.reg).

The graph. The model holds the training graph as a fixed, non-trainable edge list (`Constant`, carried with the
state like two_tower's catalogue), built once in the constructor from `graph`:
  - "movielens_loo": the train rows of `jaxdl.data.movielens.leave_one_out` (the very function the
    `movielens_loo` builder's train split is generated from), read from the raw files: 98,114 interactions, no
    validation or test item (each user's last two interactions by time are left out; tests/test_lightgcn.py checks
    it). Only this train split exists as a graph source, so evaluation items can never leak into propagation.
  - (users, items): int arrays of equal length (tests, or another dataset's train interactions built by a caller).
Ids past the tables (graph edges, or user / item ids of a call made outside jit) raise ValueError naming them;
under jit they cannot be inspected, and such scores come out NaN instead of XLA's silent index clamping.

Interface and tables as the other recommenders (`jaxdl.models.recsys`): `score`, `score_all`, `__call__`, `l2`;
tables [rows, dim] ("vocab", "embed"), `row_multiple` pads rows (never propagated: only the first num_users /
num_items rows are graph nodes). Every call propagates the whole graph once (2,625 nodes and 196,228 edges for
ML-100k: a few MFLOPs per layer), so a training step's gradient flows through all K layers to every embedding.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.layers.graph import GraphsTuple, lightgcn_propagate
from jaxdl.layers.softmax import Constant
from jaxdl.models.recsys._tables import check_ids, check_sizes, lookup, table

GRAPHS = ("movielens_loo",)


def movielens_train_interactions() -> tuple[np.ndarray, np.ndarray]:
    """(users, items) int32 [98114]: the train rows of MovieLens-100k's leave-one-out split (`movielens_loo`)."""
    from jaxdl.data import movielens as ml

    data = ml.load_raw()
    train, _, _ = ml.leave_one_out(data)
    return data.user[train].astype(np.int32), data.item[train].astype(np.int32)


def bipartite_edges(users, items, num_users: int, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(senders, receivers) int32 [2 E] of the symmetric user-item graph (item node = num_users + item id), sorted by
    receiver, after
    checking every id against the table sizes (ValueError naming the first bad interaction)."""
    users, items = np.asarray(users), np.asarray(items)
    if users.ndim != 1 or users.shape != items.shape or not users.size:
        raise ValueError(f"graph users {users.shape} and items {items.shape} must be equal, non-empty [interactions]")
    if not (np.issubdtype(users.dtype, np.integer) and np.issubdtype(items.dtype, np.integer)):
        raise TypeError(f"graph ids must be integers, got {users.dtype} and {items.dtype}")
    for name, ids, n in (("user", users, num_users), ("item", items, num_items)):
        bad = np.flatnonzero((ids < 0) | (ids >= n))
        if bad.size:
            e = int(bad[0])
            raise ValueError(f"graph interaction {e}: {name} id {int(ids[e])} is outside the {n} {name}s [0, {n})")
    u, i = users.astype(np.int32), (items + num_users).astype(np.int32)
    senders, receivers = np.concatenate([u, i]), np.concatenate([i, u])
    order = np.lexsort((senders, receivers))  # by receiver: the segment sums write each node's rows together
    return senders[order], receivers[order]


class Model(nnx.Module):
    def __init__(
        self,
        *,
        num_users: int,
        dim: int = 64,
        layers: int = 3,
        graph="movielens_loo",
        init_std: float = 0.1,
        row_multiple: int = 1,
        dtype: str = "float32",
        param_dtype: str = "float32",
        input_shape: tuple[int, ...] = (),
        num_classes: int,
        rngs: nnx.Rngs,
    ):
        check_sizes("lightgcn", input_shape, num_users=num_users, num_items=num_classes, dim=dim)
        if layers < 0:
            raise ValueError(f"config.model.layers={layers} must be >= 0")
        if isinstance(graph, str):
            if graph not in GRAPHS:
                raise ValueError(f"config.model.graph={graph!r} is not a training graph; known: {GRAPHS}")
            users, items = movielens_train_interactions()
        else:
            users, items = graph
        senders, receivers = bipartite_edges(users, items, num_users, num_classes)
        self.num_users, self.num_items, self.layers, self.dtype = num_users, num_classes, layers, dtype
        self.num_edges = int(senders.shape[0])
        self.senders, self.receivers = Constant(jnp.asarray(senders)), Constant(jnp.asarray(receivers))
        kw = dict(std=init_std, row_multiple=row_multiple, param_dtype=param_dtype, rngs=rngs)
        self.user_emb, self.item_emb = table(num_users, dim, **kw), table(num_classes, dim, **kw)

    def embeddings(self) -> tuple[jax.Array, jax.Array]:
        """(users [num_users, dim], items [num_items, dim]): the layer-mean propagated embeddings."""
        x = jnp.concatenate([self.user_emb[...][: self.num_users], self.item_emb[...][: self.num_items]])
        n = self.num_users + self.num_items
        graph = GraphsTuple(
            nodes=x,
            senders=self.senders[...],
            receivers=self.receivers[...],
            n_node=np.array([n], np.int32),
            n_edge=np.array([self.num_edges], np.int32),
        )
        out = lightgcn_propagate(graph, x.astype(jnp.float32), self.layers)
        return out[: self.num_users], out[self.num_users :]

    def _poison(self, s: jax.Array, ids: jax.Array, n: int) -> jax.Array:
        """NaN where an id is outside [0, n) (reachable only under jit, where ids cannot be checked)."""
        return jnp.where((ids < 0) | (ids >= n), jnp.nan, s)

    def score(self, user: jax.Array, items: jax.Array, **inputs) -> jax.Array:
        """float32 [B, C] for user int [B], items int [B, C]."""
        check_ids("lightgcn", user, self.num_users, "user")
        check_ids("lightgcn", items, self.num_items, "item")
        eu, ei = self.embeddings()
        p = jnp.take(eu, user, axis=0).astype(self.dtype)
        q = jnp.take(ei, items, axis=0).astype(self.dtype)
        s = jnp.einsum("bd,bcd->bc", p, q).astype(jnp.float32)
        s = self._poison(s, user[:, None], self.num_users)
        return self._poison(s, items, self.num_items)

    def score_all(self, user: jax.Array, **inputs) -> jax.Array:
        """float32 [B, num_items]: one propagation, then [B, dim] x [dim, num_items]."""
        check_ids("lightgcn", user, self.num_users, "user")
        eu, ei = self.embeddings()
        p = jnp.take(eu, user, axis=0).astype(self.dtype)
        s = (p @ ei.astype(p.dtype).T).astype(jnp.float32)
        return self._poison(s, user[:, None], self.num_users)

    def __call__(self, user: jax.Array, *, item: jax.Array, train: bool = False, rngs=None, **inputs) -> jax.Array:
        """float32 [B]: the score of (user[b], item[b])."""
        return self.score(user, item[:, None])[:, 0]

    def l2(self, user: jax.Array, items: jax.Array) -> jax.Array:
        """float32 [B]: ||e0_u||^2 + sum_c ||e0_{i_c}||^2 of the layer-0 embeddings (LightGCN's regularizer)."""
        p, q = lookup(self.user_emb, user), lookup(self.item_emb, items)
        return jnp.sum(p**2, -1) + jnp.sum(q**2, (-2, -1))
