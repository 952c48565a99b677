"""Zachary's karate club (networkx): semi-supervised node classification with GCN / GAT / GIN (jaxdl.models
`gnn`) beside networkx's label propagation, Kipf & Welling's protocol on the club split.

    python experiments/structured/karate.py            # ~1-2 min on 2 shared cores; `--smoke` for seconds
Labels: the club each member joined after the split (networkx's "club" attribute: Mr. Hi = 0, Officer = 1).
One labelled node per class: the two leaders, node 0 (Mr. Hi) and node 33 (the officer, John A.); accuracy on the
other 32 members. Features: one-hot node identity (34-dim), as Kipf & Welling's karate example. GNNs: 2 layers,
hidden 16 (GAT: 4 heads x 4), dropout 0.5, Adam 1e-2, weight decay 5e-4, 200 full-graph steps, seeds 0-9
(init and dropout). Peers (deterministic, no training): networkx.node_classification.harmonic_function (Zhu et
al. 2003) and local_and_global_consistency (Zhou et al. 2004) from the same two labels.
Writes experiments/structured/karate_results.csv (one row per model and seed) and karate_summary.json
(mean ± sample std over seeds, n stated; device, date, versions).
"""

import argparse
import csv
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # study_env beside this file
from study_env import environment  # noqa: E402

from jaxdl import models
from jaxdl.layers import graph as gl

HERE = os.path.dirname(os.path.abspath(__file__))
LABELLED = (0, 33)
KINDS = ("gcn", "gat", "gin")


def karate() -> tuple[gl.GraphsTuple, np.ndarray]:
    g = nx.karate_club_graph()
    n = g.number_of_nodes()
    labels = np.array([0 if g.nodes[i]["club"] == "Mr. Hi" else 1 for i in range(n)], np.int32)
    edges = np.array(list(g.edges()), np.int32)
    senders = np.concatenate([edges[:, 0], edges[:, 1]])  # both directions
    receivers = np.concatenate([edges[:, 1], edges[:, 0]])
    graph = gl.GraphsTuple(
        nodes=np.eye(n, dtype=np.float32),
        senders=senders,
        receivers=receivers,
        n_node=np.array([n], np.int32),
        n_edge=np.array([len(senders)], np.int32),
    )
    gl.check_graph(graph)
    return graph, labels


def _build(kind: str, seed: int, graph):
    with nnx.use_eager_sharding(False):
        model = models.make(
            dict(name="gnn", kind=kind, hidden=16, layers=2, heads=4, dropout=0.5),
            input_shape=(graph.nodes.shape[1],),
            num_classes=2,
            rngs=nnx.Rngs(params=seed, dropout=seed),
        )
    return nnx.split(model, nnx.Param, ...)


def train_gnn(kind: str, seeds: range, graph, labels, steps: int) -> list[tuple[int, float, float]]:
    """(seed, test accuracy, seconds) per seed; one compilation per kind, the seeds only change the values."""
    graphdef, _, rest = _build(kind, 0, graph)
    opt = optax.adamw(1e-2, weight_decay=5e-4)
    train_idx = jnp.asarray(LABELLED)
    y = jnp.asarray(labels)
    test = np.setdiff1d(np.arange(len(labels)), LABELLED)

    @jax.jit
    def fit(params, key):
        def loss_fn(p, key):
            logits = nnx.merge(graphdef, p, rest)(graph, train=True, rngs=nnx.Rngs(dropout=key))
            return optax.softmax_cross_entropy_with_integer_labels(logits[train_idx], y[train_idx]).mean()

        def step(carry, key):
            params, opt_state = carry
            grads = jax.grad(loss_fn)(params, key)
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(key, steps))
        return jnp.argmax(nnx.merge(graphdef, params, rest)(graph), -1)

    out = []
    for seed in seeds:
        t0 = time.time()
        _, params, _ = _build(kind, seed, graph)
        pred = np.asarray(fit(params, jax.random.key(seed)))
        out.append((seed, float((pred[test] == labels[test]).mean()), round(time.time() - t0, 2)))
    return out


def label_propagation(labels) -> dict[str, float]:
    g = nx.karate_club_graph()
    for i in LABELLED:
        g.nodes[i]["label"] = int(labels[i])
    test = np.setdiff1d(np.arange(len(labels)), LABELLED)
    out = {}
    for name, fn in (
        ("harmonic_function", nx.node_classification.harmonic_function),
        ("local_and_global_consistency", nx.node_classification.local_and_global_consistency),
    ):
        pred = np.asarray(fn(g))
        out[name] = float((pred[test] == labels[test]).mean())
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out_dir", default=HERE)
    a = p.parse_args()
    if a.smoke:
        a.seeds, a.steps = 2, 20
    graph, labels = karate()
    env = environment(networkx=nx.__version__)
    rows = []
    for kind in KINDS:
        for seed, acc, secs in train_gnn(kind, range(a.seeds), graph, labels, a.steps):
            rows.append(dict(model=kind, seed=seed, accuracy=acc, steps=a.steps, wall_s=secs))
            print(rows[-1], flush=True)
    for name, acc in label_propagation(labels).items():
        rows.append(dict(model=f"networkx_{name}", seed="", accuracy=acc, steps=0, wall_s=0.0))
        print(rows[-1], flush=True)
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "karate_results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["model", "seed", "accuracy", "steps", "wall_s", *env])
        w.writeheader()
        w.writerows(r | env for r in rows)
    summary = {"environment": env, "labelled_nodes": list(LABELLED), "test_nodes": 32, "models": {}}
    for model in dict.fromkeys(r["model"] for r in rows):
        accs = [r["accuracy"] for r in rows if r["model"] == model]
        summary["models"][model] = {
            "mean": statistics.mean(accs),
            "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "n": len(accs),
        }
    with open(os.path.join(a.out_dir, "karate_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    for model, s in summary["models"].items():
        print(f"{model}: {s['mean']:.3f} ± {s['std']:.3f} (n={s['n']})")


if __name__ == "__main__":
    main()
