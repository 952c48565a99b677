"""Graph layers (jaxdl.layers.graph) against dense adjacency-matrix computations on random graphs, permutation
equivariance, attention normalisation, padding/bucketing, sharded edge lists, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxdl.layers import graph as gl


def _random_graph(seed, n=9, e=20, f=5):
    rng = np.random.default_rng(seed)
    senders = rng.integers(0, n, e).astype(np.int32)
    receivers = rng.integers(0, n, e).astype(np.int32)  # may repeat edges and have self loops: A counts them
    nodes = rng.normal(size=(n, f)).astype(np.float32)
    return gl.GraphsTuple(nodes, senders, receivers, np.array([n], np.int32), np.array([e], np.int32))


def _adjacency(g):
    n = g.nodes.shape[0]
    a = np.zeros((n, n))
    np.add.at(a, (g.receivers, g.senders), 1.0)  # A[r, s] = number of edges s -> r
    return a


def _layers():
    rngs = nnx.Rngs(0)
    with nnx.use_eager_sharding(False):
        return gl.GCN(5, 4, rngs=rngs), gl.GAT(5, 3, heads=2, rngs=rngs), gl.GIN(5, 4, hidden=6, rngs=rngs)


@pytest.mark.parametrize("seed", [0, 1])
def test_layers_equal_dense_adjacency_computations(seed):
    g = _random_graph(seed)
    gcn, gat, gin = _layers()
    gin.eps[...] = jnp.asarray(0.3)
    x = g.nodes.astype(np.float64)
    a = _adjacency(g)
    n = a.shape[0]
    # GCN: D^-1/2 (A + I) D^-1/2 X W + b, D the row sums of A + I
    a_hat = a + np.eye(n)
    d = a_hat.sum(1)
    w, b = np.asarray(gcn.linear.kernel[...], np.float64), np.asarray(gcn.linear.bias[...], np.float64)
    want = (a_hat / np.sqrt(d[:, None] * d[None, :])) @ x @ w + b
    np.testing.assert_allclose(gcn(g), want, rtol=1e-5, atol=1e-5)
    # GIN: MLP((1 + eps) X + A X)
    agg = 1.3 * x + a @ x
    h = np.maximum(agg @ np.asarray(gin.fc1.kernel[...]) + np.asarray(gin.fc1.bias[...]), 0)
    want = h @ np.asarray(gin.fc2.kernel[...]) + np.asarray(gin.fc2.bias[...])
    np.testing.assert_allclose(gin(g), want, rtol=1e-5, atol=1e-5)
    # GAT: dense masked softmax over (A + I) > 0, each edge counted with its multiplicity
    wx = (x @ np.asarray(gat.linear.kernel[...], np.float64)).reshape(n, 2, 3)
    src = (wx * np.asarray(gat.a_src[...])).sum(-1)  # [n, heads]
    dst = (wx * np.asarray(gat.a_dst[...])).sum(-1)
    out = np.zeros((n, 2, 3))
    dense_alpha = np.zeros((2, n, n))
    for hd in range(2):
        logits = dst[:, hd][:, None] + src[:, hd][None, :]  # [receiver, sender]
        logits = np.where(logits > 0, logits, 0.2 * logits)
        weights = a_hat * np.exp(logits - logits.max(1, keepdims=True))
        dense_alpha[hd] = weights / weights.sum(1, keepdims=True)
        out[:, hd] = dense_alpha[hd] @ wx[:, hd]
    out = out + np.asarray(gat.linear.bias[...]).reshape(2, 3)
    np.testing.assert_allclose(gat(g), out.reshape(n, 6), rtol=1e-5, atol=1e-5)
    alpha, s, r, _ = gat.attention(g)
    sums = jax.ops.segment_sum(alpha, r, num_segments=n)
    np.testing.assert_allclose(sums, 1.0, rtol=1e-6)  # attention over each node's incoming edges sums to 1
    # LightGCN: mean of Â^k X, Â = D^-1/2 A D^-1/2 with D the in-degree (rows of A), k = 0..2
    din = np.maximum(a.sum(1), 1)
    a_norm = a / np.sqrt(din[:, None] * din[None, :])
    want = (x + a_norm @ x + a_norm @ a_norm @ x) / 3
    np.testing.assert_allclose(gl.lightgcn_propagate(g, jnp.asarray(g.nodes), 2), want, rtol=1e-5, atol=1e-5)


def test_permutation_equivariance():
    g = _random_graph(2)
    perm = np.random.default_rng(0).permutation(g.nodes.shape[0])
    inv = np.argsort(perm)  # node i of g is node inv[i] of the permuted graph
    gp = g._replace(nodes=g.nodes[perm], senders=inv[g.senders].astype(np.int32), receivers=inv[g.receivers])
    for layer in _layers():
        np.testing.assert_allclose(layer(gp), np.asarray(layer(g))[perm], rtol=1e-5, atol=1e-5)


def test_batched_padded_graphs_match_each_graph_alone_and_jit_compiles_once_per_bucket():
    graphs = [_random_graph(s, n=n, e=e) for s, (n, e) in enumerate([(4, 6), (7, 10), (3, 2)])]
    buckets = [(16, 24, 4), (32, 48, 8)]
    gcn, gat, gin = _layers()
    traces = []

    @jax.jit
    def run(g):
        traces.append(1)
        return gcn(g), gat(g), gin(g), gl.node_mask(g), gl.graph_mask(g)

    b1 = gl.pad_to_bucket(gl.batch(graphs), buckets)
    b2 = gl.pad_to_bucket(gl.batch(graphs[::-1]), buckets)
    assert b1.nodes.shape == (16, 5) and b1.senders.shape == (24,) and b1.n_node.shape == (4,)
    out1, out2 = run(b1), run(b2)
    assert len(traces) == 1  # same bucket: one compilation
    offset = 0
    for g in graphs:
        n = g.nodes.shape[0]
        for layer, got in zip((gcn, gat, gin), out1[:3], strict=True):
            np.testing.assert_allclose(got[offset : offset + n], layer(g), rtol=1e-5, atol=1e-5)
        offset += n
    assert np.asarray(out1[3]).sum() == 14 and not np.asarray(out1[3])[14:].any()
    assert list(np.asarray(out1[4])) == [True, True, True, False]
    np.testing.assert_allclose(out2[0][:3], out1[0][11:14], rtol=1e-5, atol=1e-5)  # graph 3 comes first in b2
    readout = gl.graph_sum(b1, out1[0])
    np.testing.assert_allclose(readout[1], np.asarray(gcn(graphs[1])).sum(0), rtol=1e-5, atol=1e-5)


def test_edge_lists_sharded_over_the_data_axis_equal_one_device():
    devices = jax.devices()
    if len(devices) < 8:
        pytest.skip("needs the 8 simulated CPU devices of tests/conftest.py")
    g = gl.pad_to_bucket(_random_graph(3, n=30, e=61), [(32, 64, 2)])
    gcn, gat, gin = _layers()
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices[:8])
    edge_sharding = NamedSharding(mesh, PartitionSpec("data"))
    sharded = g._replace(
        senders=jax.device_put(g.senders, edge_sharding), receivers=jax.device_put(g.receivers, edge_sharding)
    )
    assert len(sharded.senders.sharding.device_set) == 8

    def run(g):
        return gcn(g), gat(g), gin(g)

    with jax.default_device(devices[0]):
        want = jax.jit(run)(jax.device_put(g, devices[0]))
    got = jax.jit(run)(sharded)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_bad_graphs_raise_naming_the_problem():
    g = _random_graph(0)
    gcn, gat, gin = _layers()
    bad = g._replace(receivers=np.where(np.arange(20) == 5, 12, g.receivers).astype(np.int32))
    for layer in (gcn, gat, gin):
        with pytest.raises(ValueError, match=r"edge 5: receivers\[5\] = 12 points past the 9 nodes"):
            layer(bad)
    with pytest.raises(ValueError, match=r"senders\[0\] = -1 points past"):
        gl.check_graph(g._replace(senders=np.where(np.arange(20) == 0, -1, g.senders).astype(np.int32)))
    with pytest.raises(ValueError, match=r"graph with 9 nodes, 20 edges, 1 graphs is bigger than its bucket"):
        gl.pad_to_bucket(g, [(8, 64, 2), (16, 16, 2)])
    with pytest.raises(ValueError, match=r"n_node sums to 10 but nodes has 9 rows"):
        gl.check_graph(g._replace(n_node=np.array([10], np.int32)))


def test_gnn_learns_karate_club_from_two_labels():
    """The study's GCN / GIN (jaxdl.models gnn) from the two leaders' labels beat the majority class on the other 32
    members of Zachary's karate club by a wide margin (networkx's graph, experiments/structured/karate.py)."""
    from jaxdl.ablate import _load_module

    karate = _load_module("experiments/structured/karate.py")
    graph, labels = karate.karate()
    assert graph.nodes.shape == (34, 34) and graph.senders.shape == (156,)
    test = np.setdiff1d(np.arange(34), karate.LABELLED)
    majority = np.bincount(labels[test]).max() / len(test)
    for kind in ("gcn", "gin"):
        [(_, acc, _)] = karate.train_gnn(kind, range(1), graph, labels, steps=100)
        assert acc > majority + 0.3, (kind, acc, majority)


@pytest.mark.parametrize("kind", ["gcn", "gat", "gin"])
def test_gnn_graph_readout_of_a_padded_batch_equals_each_graph_alone(kind):
    from jaxdl import models

    with nnx.use_eager_sharding(False):
        model = models.make(
            dict(name="gnn", kind=kind, hidden=8, heads=2, readout="sum"),
            input_shape=(5,),
            num_classes=3,
            rngs=nnx.Rngs(0),
        )
    graphs = [_random_graph(s, n=n, e=e) for s, (n, e) in enumerate([(4, 6), (6, 9)])]
    padded = gl.pad_to_bucket(gl.batch(graphs), [(16, 32, 4)])
    logits = model(padded)
    assert logits.shape == (4, 3)
    for i, g in enumerate(graphs):
        np.testing.assert_allclose(logits[i], model(g)[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"config.model.kind='sage' is not one of"), nnx.use_eager_sharding(False):
        models.make(dict(name="gnn", kind="sage"), input_shape=(5,), num_classes=3, rngs=nnx.Rngs(0))


def test_graph_classification_generator_makes_trees_and_unicyclic_graphs():
    import networkx as nx

    from jaxdl.ablate import _load_module

    gc = _load_module("experiments/structured/graph_classify.py")
    rng = np.random.default_rng(0)
    graphs, clean, noisy = gc.dataset(200, rng)
    for g, c in zip(graphs, clean, strict=True):
        nxg = nx.Graph(list(zip(g.senders.tolist(), g.receivers.tolist(), strict=True)))
        n = g.nodes.shape[0]
        assert nxg.number_of_nodes() == n and nx.is_connected(nxg)
        assert nxg.number_of_edges() == n - 1 + c and len(nx.cycle_basis(nxg)) == c
    assert 0.05 < (clean != noisy).mean() < 0.15  # ~10 % label noise
