"""Message passing over padded edge lists (jraph's `GraphsTuple` semantics, with `jax.ops.segment_sum` /
`segment_max`): GCN, GAT (multi-head), GIN and LightGCN propagation, plus batching, bucketed padding and checks.

`jraph` itself (0.0.6.dev0, the last release) still installs and runs with jax 0.12.1, but DeepMind no longer
develops it, so jaxdl keeps its own small version of the same data structure and padding convention.

A batch of graphs is one big graph (`GraphsTuple`):
    nodes      float [num_nodes, features]      node features of every graph, graph after graph
    senders    int32 [num_edges]                edge e carries a message from node senders[e] ...
    receivers  int32 [num_edges]                ... to node receivers[e] (an undirected edge is two edges)
    n_node     int32 [num_graphs]               nodes per graph; n_edge int32 [num_graphs] edges per graph
    edges, globals                              optional features (unused by these layers)
`pad_to_bucket` pads to fixed (nodes, edges, graphs) sizes so jit compiles once per bucket: the padding is one
extra graph (the last) holding every padding node, with padding edges from and to its first node, so real nodes
never receive padding messages; `node_mask` / `graph_mask` tell real from padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.layers.dense import dense


class GraphsTuple(NamedTuple):
    nodes: jax.Array | np.ndarray
    senders: jax.Array | np.ndarray
    receivers: jax.Array | np.ndarray
    n_node: jax.Array | np.ndarray
    n_edge: jax.Array | np.ndarray
    edges: jax.Array | np.ndarray | None = None
    globals: jax.Array | np.ndarray | None = None


def _concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def check_graph(graph: GraphsTuple) -> None:
    """ValueError naming the first edge whose sender/receiver is outside [0, num_nodes), or counts that disagree
    with the arrays. Only concrete arrays are checked (inside jit they cannot be inspected)."""
    n = graph.nodes.shape[0]
    if graph.senders.shape != graph.receivers.shape or graph.senders.ndim != 1:
        raise ValueError(f"senders {graph.senders.shape} and receivers {graph.receivers.shape} must be equal [edges]")
    if not _concrete(graph.senders, graph.receivers, graph.n_node, graph.n_edge):
        return
    for name in ("senders", "receivers"):
        ids = np.asarray(getattr(graph, name))
        bad = np.flatnonzero((ids < 0) | (ids >= n))
        if bad.size:
            e = int(bad[0])
            raise ValueError(f"edge {e}: {name}[{e}] = {int(ids[e])} points past the {n} nodes of the graph")
    if int(np.sum(graph.n_node)) != n:
        raise ValueError(f"n_node sums to {int(np.sum(graph.n_node))} but nodes has {n} rows")
    if int(np.sum(graph.n_edge)) != graph.senders.shape[0]:
        raise ValueError(f"n_edge sums to {int(np.sum(graph.n_edge))} but there are {graph.senders.shape[0]} edges")


def batch(graphs: Sequence[GraphsTuple]) -> GraphsTuple:
    """Several graphs as one (node ids of each shifted by the nodes before it); numpy in, numpy out."""
    offsets = np.cumsum([0] + [g.nodes.shape[0] for g in graphs[:-1]])
    return GraphsTuple(
        nodes=np.concatenate([np.asarray(g.nodes) for g in graphs]),
        senders=np.concatenate([np.asarray(g.senders) + o for g, o in zip(graphs, offsets, strict=True)]).astype(
            np.int32
        ),
        receivers=np.concatenate([np.asarray(g.receivers) + o for g, o in zip(graphs, offsets, strict=True)]).astype(
            np.int32
        ),
        n_node=np.concatenate([np.atleast_1d(np.asarray(g.n_node)) for g in graphs]).astype(np.int32),
        n_edge=np.concatenate([np.atleast_1d(np.asarray(g.n_edge)) for g in graphs]).astype(np.int32),
    )


def pad_to_bucket(graph: GraphsTuple, buckets: Sequence[tuple[int, int, int]]) -> GraphsTuple:
    """Pads `graph` (numpy) to the smallest bucket (max_nodes, max_edges, max_graphs) it fits with room for the
    padding graph (nodes < max_nodes, graphs < max_graphs). A graph bigger than every bucket raises naming its
    size and the largest bucket."""
    check_graph(graph)
    n, e, g = graph.nodes.shape[0], graph.senders.shape[0], graph.n_node.shape[0]
    fits = [b for b in buckets if n < b[0] and e <= b[1] and g < b[2]]
    if not fits:
        raise ValueError(
            f"graph with {n} nodes, {e} edges, {g} graphs is bigger than its bucket: the buckets "
            f"(nodes, edges, graphs) are {list(buckets)} and need room for one padding node and graph"
        )
    max_n, max_e, max_g = min(fits, key=lambda b: (b[0], b[1], b[2]))
    pn, pe, pg = max_n - n, max_e - e, max_g - g
    nodes = np.concatenate([np.asarray(graph.nodes), np.zeros((pn, *graph.nodes.shape[1:]), graph.nodes.dtype)])
    pad_edge = np.full(pe, n, np.int32)  # from and to the first padding node
    return GraphsTuple(
        nodes=nodes,
        senders=np.concatenate([np.asarray(graph.senders, np.int32), pad_edge]),
        receivers=np.concatenate([np.asarray(graph.receivers, np.int32), pad_edge]),
        n_node=np.concatenate([np.asarray(graph.n_node, np.int32), [pn], np.zeros(pg - 1, np.int32)]),
        n_edge=np.concatenate([np.asarray(graph.n_edge, np.int32), [pe], np.zeros(pg - 1, np.int32)]),
    )


def node_graph_ids(graph: GraphsTuple) -> jax.Array:
    """int32 [num_nodes]: the graph each node belongs to."""
    n_graph = graph.n_node.shape[0]
    return jnp.repeat(jnp.arange(n_graph), graph.n_node, total_repeat_length=graph.nodes.shape[0])


def _padding_graph(graph: GraphsTuple) -> jax.Array:
    """Index of the padding graph: the one before the trailing empty graphs (jraph's convention)."""
    trailing_empty = jnp.sum(jnp.cumprod(jnp.flip(graph.n_node == 0)))
    return graph.n_node.shape[0] - 1 - trailing_empty


def node_mask(graph: GraphsTuple, padded: bool = True) -> jax.Array:
    """bool [num_nodes]: True on real nodes (all but the padding graph's when `padded`)."""
    n = graph.nodes.shape[0]
    if not padded:
        return jnp.ones(n, bool)
    return jnp.arange(n) < n - graph.n_node[_padding_graph(graph)]


def graph_mask(graph: GraphsTuple, padded: bool = True) -> jax.Array:
    """bool [num_graphs]: True on real graphs (those before the padding graph when `padded`)."""
    g = graph.n_node.shape[0]
    if not padded:
        return jnp.ones(g, bool)
    return jnp.arange(g) < _padding_graph(graph)


def graph_sum(graph: GraphsTuple, x: jax.Array) -> jax.Array:
    """[num_graphs, ...]: the sum of x [num_nodes, ...] over each graph's nodes (a readout)."""
    return jax.ops.segment_sum(x, node_graph_ids(graph), num_segments=graph.n_node.shape[0])


# ---------------------------------------------------------------------------------------------- primitives
def degree(receivers: jax.Array, num_nodes: int) -> jax.Array:
    """float32 [num_nodes]: incoming edges per node."""
    return jax.ops.segment_sum(jnp.ones(receivers.shape, jnp.float32), receivers, num_segments=num_nodes)


def segment_softmax(logits: jax.Array, segments: jax.Array, num_segments: int) -> jax.Array:
    """Softmax of logits [edges, ...] within each segment (e.g. the edges into one node), max-shifted for
    stability with segment_max; sums to 1 over every non-empty segment."""
    shift = jax.ops.segment_max(logits, segments, num_segments=num_segments)
    ex = jnp.exp(logits - jax.lax.stop_gradient(shift)[segments])
    return ex / jax.ops.segment_sum(ex, segments, num_segments=num_segments)[segments]


def _with_self_loops(graph: GraphsTuple) -> tuple[jax.Array, jax.Array]:
    n = graph.nodes.shape[0]
    loop = jnp.arange(n, dtype=jnp.int32)
    return jnp.concatenate([graph.senders, loop]), jnp.concatenate([graph.receivers, loop])


def gcn_propagate(graph: GraphsTuple, x: jax.Array, self_loops: bool = True) -> jax.Array:
    """D^-1/2 (A + I) D^-1/2 x with A[r, s] = #edges s -> r and D the in-degree of A + I (Kipf & Welling 2017)."""
    check_graph(graph)
    n = x.shape[0]
    s, r = _with_self_loops(graph) if self_loops else (graph.senders, graph.receivers)
    inv = jax.lax.rsqrt(jnp.maximum(degree(r, n), 1.0))
    msg = x[s] * (inv[s] * inv[r])[:, None]
    return jax.ops.segment_sum(msg, r, num_segments=n)


def lightgcn_propagate(graph: GraphsTuple, x: jax.Array, layers: int) -> jax.Array:
    """LightGCN (He et al. 2020): the mean of x, Âx, ..., Â^layers x with Â = D^-1/2 A D^-1/2 (no self loops,
    no weights, no nonlinearity); x [num_nodes, dim] -> [num_nodes, dim]."""
    out, h = x, x
    for _ in range(layers):
        h = gcn_propagate(graph, h, self_loops=False)
        out = out + h
    return out / (layers + 1)


# ---------------------------------------------------------------------------------------------- layers
class GCN(nnx.Module):
    """Graph convolution: nodes [N, din] -> [N, dout] = D^-1/2 (A + I) D^-1/2 (nodes W) + b."""

    def __init__(self, din: int, dout: int, *, dtype: str = "float32", param_dtype: str = "float32", rngs: nnx.Rngs):
        self.linear = dense(din, dout, ("embed", "mlp"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, graph: GraphsTuple, nodes: jax.Array | None = None) -> jax.Array:
        x = graph.nodes if nodes is None else nodes
        bias = self.linear.bias[...]
        return gcn_propagate(graph, x @ self.linear.kernel[...]) + bias


class GAT(nnx.Module):
    """Graph attention (Veličković et al. 2018), `heads` heads with self loops: for edge j -> i,
    e_ij = LeakyReLU_0.2(a_dst · W h_i + a_src · W h_j), alpha_ij = softmax over the edges into i,
    h'_i = sum_j alpha_ij W h_j (+ b). Output [N, heads * dout] (concat) or [N, dout] (mean over heads)."""

    def __init__(
        self,
        din: int,
        dout: int,
        heads: int = 1,
        *,
        concat: bool = True,
        negative_slope: float = 0.2,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.linear = dense(din, heads * dout, ("embed", "mlp"), **kw)
        init = nnx.initializers.glorot_uniform()
        self.a_src = nnx.Param(init(rngs.params(), (heads, dout), jnp.float32))
        self.a_dst = nnx.Param(init(rngs.params(), (heads, dout), jnp.float32))
        self.heads, self.dout, self.concat, self.slope = heads, dout, concat, negative_slope

    def attention(self, graph: GraphsTuple, nodes: jax.Array | None = None):
        """(alpha [E + N, heads] over the edges then the self loops, senders, receivers, projected [N, heads, dout])."""
        check_graph(graph)
        x = graph.nodes if nodes is None else nodes
        n = x.shape[0]
        h = (x @ self.linear.kernel[...]).reshape(n, self.heads, self.dout)
        s, r = _with_self_loops(graph)
        logits = (h[s] * self.a_src[...]).sum(-1) + (h[r] * self.a_dst[...]).sum(-1)
        logits = jax.nn.leaky_relu(logits, self.slope)
        return segment_softmax(logits, r, n), s, r, h

    def __call__(self, graph: GraphsTuple, nodes: jax.Array | None = None) -> jax.Array:
        alpha, s, r, h = self.attention(graph, nodes)
        out = jax.ops.segment_sum(alpha[..., None] * h[s], r, num_segments=h.shape[0])  # [N, heads, dout]
        bias = self.linear.bias[...].reshape(self.heads, self.dout)
        out = out + bias
        return out.reshape(h.shape[0], -1) if self.concat else out.mean(1)


class GIN(nnx.Module):
    """Graph isomorphism network layer (Xu et al. 2019): h'_i = MLP((1 + eps) h_i + sum_{j -> i} h_j), the MLP
    Linear(din, hidden) -> ReLU -> Linear(hidden, dout); eps learned (`learn_eps`) from 0, else fixed at 0."""

    def __init__(
        self,
        din: int,
        dout: int,
        hidden: int = 0,
        *,
        learn_eps: bool = True,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        hidden = hidden or dout
        self.fc1 = dense(din, hidden, ("embed", "mlp"), **kw)
        self.fc2 = dense(hidden, dout, ("mlp", "embed"), **kw)
        self.eps = nnx.Param(jnp.zeros((), jnp.float32)) if learn_eps else None

    def aggregate(self, graph: GraphsTuple, x: jax.Array) -> jax.Array:
        """(1 + eps) x + sum over incoming edges of the senders' x: [N, din]."""
        check_graph(graph)
        eps = 0.0 if self.eps is None else self.eps[...]
        return (1.0 + eps) * x + jax.ops.segment_sum(x[graph.senders], graph.receivers, num_segments=x.shape[0])

    def __call__(self, graph: GraphsTuple, nodes: jax.Array | None = None) -> jax.Array:
        x = graph.nodes if nodes is None else nodes
        return self.fc2(jax.nn.relu(self.fc1(self.aggregate(graph, x))))
