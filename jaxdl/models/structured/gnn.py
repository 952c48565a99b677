"""Graph neural network node/graph classifier over `jaxdl.layers.graph` message passing: `kind` = gcn | gat | gin.

`model(graph)` with a `GraphsTuple` (nodes float [num_nodes, input_shape[0]]) returns node logits float32
[num_nodes, num_classes]; `readout="sum"` returns graph logits [num_graphs, num_classes]: a linear head on the
concatenated per-graph sums of the node states of every layer, the input included (Xu et al. 2019, eq. 4.2). Layers: `layers` message-passing
layers of width `hidden` (GAT: `heads` heads of hidden // heads units, concatenated; its last layer averages
`heads` heads of num_classes units, as Veličković et al.), ReLU (GAT: ELU) between them, dropout on each layer's
input. Node classification: the last message-passing layer outputs the classes directly (Kipf & Welling's GCN).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers import graph as gl
from jaxdl.layers.dense import dense

KINDS = ("gcn", "gat", "gin")


class Model(nnx.Module):
    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        kind: str = "gcn",
        hidden: int = 16,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.5,
        readout: str = "none",
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        """kind: gcn | gat | gin. readout: "none" (node logits) | "sum" (graph logits)."""
        if kind not in KINDS:
            raise ValueError(f"config.model.kind={kind!r} is not one of {KINDS}")
        if readout not in ("none", "sum"):
            raise ValueError(f"config.model.readout={readout!r} is not one of ('none', 'sum')")
        if layers < 1:
            raise ValueError(f"config.model.layers={layers}: expected >= 1")
        if kind == "gat" and hidden % heads:
            raise ValueError(f"config.model.hidden={hidden} is not divisible by heads={heads}")
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        din = input_shape[-1]
        node_out = readout == "none"
        blocks = []
        for i in range(layers):
            last = i == layers - 1 and node_out
            dout = num_classes if last else hidden
            if kind == "gcn":
                blocks.append(gl.GCN(din, dout, **kw))
            elif kind == "gin":
                blocks.append(gl.GIN(din, dout, hidden, **kw))
            elif last:
                blocks.append(gl.GAT(din, num_classes, heads, concat=False, **kw))
            else:
                blocks.append(gl.GAT(din, hidden // heads, heads, **kw))
            din = dout
        self.blocks = nnx.List(blocks)
        width = input_shape[-1] + layers * hidden
        self.head = None if node_out else dense(width, num_classes, ("mlp", "vocab"), **kw)
        self.drop = nnx.Dropout(dropout)
        self.kind, self.readout = kind, readout

    def __call__(self, graph: gl.GraphsTuple, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        act = jax.nn.elu if self.kind == "gat" else jax.nn.relu
        h = graph.nodes
        states = [h]
        for i, block in enumerate(self.blocks):
            h = self.drop(h, deterministic=not train, rngs=rngs)
            h = block(graph, h)
            if i < len(self.blocks) - 1 or self.head is not None:
                h = act(h)
            states.append(h)
        if self.head is not None:  # padding nodes sum into the padding graph only
            h = self.head(gl.graph_sum(graph, jnp.concatenate(states, -1)))
        return h.astype(jnp.float32)
