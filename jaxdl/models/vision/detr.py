"""DETR (Carion et al. 2020), scaled down for 64x64 canvases on CPU: detection as set prediction, no anchors and no
NMS. [b, H, W, c] -> _pyramid.Backbone -> the stride-8 features (1x1 conv to `dim`) as (H/8)(W/8) tokens + learned
positional embeddings -> `enc_layers` transformer encoder layers (post-norm, or pre-norm with `prenorm`) ->
`dec_layers` decoder layers over `queries` learned object queries (self-attention among queries, cross-attention
to the encoder memory; every attention is the project's `jaxdl.layers.attention.Attention`) -> after every
decoder layer the shared heads give class logits (num_classes + 1, the last = "no object") and a box (sigmoid
(cx, cy, w, h) of the image size, a 3-layer MLP). The outputs of every decoder layer are returned for the
auxiliary losses (task `detect`).

`prenorm=True`: pre-norm layers (LayerNorm before each attention / MLP, the residual stream itself never
normalized) with a final LayerNorm after the encoder and one shared by the decoder outputs before the heads
(DETR's `normalize_before` option); pre-norm transformers train stably at larger learning rates and depths.

`pos_std`: standard deviation of the initial learned positional embeddings (memory tokens and object queries).
0.02 (the first pass) makes them ~50x smaller than the LayerNorm-scaled content they are added to, so the 16-32
queries start almost identical and attention has little to localize with; DETR's query embeddings are
`nn.Embedding`s, initialized N(0, 1) — `pos_std=1.0`.

Simplification against the paper: positional embeddings are added to the layer input (so they also reach the
values), not only to queries and keys.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.attention import Attention
from jaxdl.layers.conv import conv2d
from jaxdl.layers.dense import dense
from jaxdl.models.vision._pyramid import Backbone, check_input_shape


class _Layer(nnx.Module):
    """Transformer layer: self-attention, optional cross-attention, MLP; [b, L, dim] -> [b, L, dim]. Post-norm
    (x = norm(x + f(x))) or, with `prenorm`, pre-norm (x = x + f(norm(x)))."""

    def __init__(self, dim: int, heads: int, mlp: int, cross: bool, prenorm: bool = False, **kw):
        self.prenorm = prenorm
        self.attn = Attention(dim, heads, **kw)
        self.norm1 = nnx.LayerNorm(dim, rngs=kw["rngs"])
        self.cross = Attention(dim, heads, **kw) if cross else None
        self.norm2 = nnx.LayerNorm(dim, rngs=kw["rngs"]) if cross else None
        self.fc1 = dense(dim, mlp, ("embed", "mlp"), **kw)
        self.fc2 = dense(mlp, dim, ("mlp", "embed"), **kw)
        self.norm3 = nnx.LayerNorm(dim, rngs=kw["rngs"])

    def __call__(self, x, pos, memory=None, memory_pos=None):
        if self.prenorm:
            h = self.norm1(x)
            x = x + self.attn(h + pos)
            if self.cross is not None:
                x = x + self.cross(self.norm2(x) + pos, memory + memory_pos)
            return x + self.fc2(nnx.relu(self.fc1(self.norm3(x))))
        x = self.norm1(x + self.attn(x + pos))
        if self.cross is not None:
            x = self.norm2(x + self.cross(x + pos, memory + memory_pos))
        return self.norm3(x + self.fc2(nnx.relu(self.fc1(x))))


class Model(nnx.Module):
    """[batch, H, W, c] -> dict(logits float32 [b, dec_layers, queries, num_classes + 1], boxes [b, dec_layers,
    queries, 4] (x1, y1, x2, y2 pixels)); the last decoder layer is the prediction, the others feed the auxiliary
    losses. `detect` decodes the last layer's queries (no NMS)."""

    set_prediction = True  # the detect task matches queries to objects (Hungarian) instead of dense targets

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        width: int = 16,
        dim: int = 64,
        heads: int = 4,
        mlp: int = 128,
        enc_layers: int = 2,
        dec_layers: int = 2,
        queries: int = 16,
        prenorm: bool = False,
        pos_std: float = 0.02,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        check_input_shape("detr", input_shape)
        if pos_std <= 0:
            raise ValueError(f"config.model.pos_std={pos_std} must be > 0")
        if queries < 1 or dec_layers < 1:
            raise ValueError(f"config.model.queries={queries} and dec_layers={dec_layers} must be >= 1")
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.backbone = Backbone(input_shape[-1], width=width, norm="group", groups=8, **kw)
        self.proj = conv2d(self.backbone.channels[2], dim, 1, bias=True, **kw)
        tokens = (input_shape[0] // 8) * (input_shape[1] // 8)
        init = nnx.initializers.normal(pos_std)
        self.pos = nnx.Param(init(rngs.params(), (tokens, dim)))
        self.query_pos = nnx.Param(init(rngs.params(), (queries, dim)))
        self.encoder = nnx.List([_Layer(dim, heads, mlp, False, prenorm, **kw) for _ in range(enc_layers)])
        self.decoder = nnx.List([_Layer(dim, heads, mlp, True, prenorm, **kw) for _ in range(dec_layers)])
        # pre-norm: the residual streams are normalized once at the end (encoder memory; decoder outputs -> heads)
        self.enc_norm = nnx.LayerNorm(dim, rngs=rngs) if prenorm else None
        self.dec_norm = nnx.LayerNorm(dim, rngs=rngs) if prenorm else None
        self.cls = dense(dim, num_classes + 1, ("embed", "vocab"), **kw)
        self.box = nnx.List([dense(dim, dim, ("embed", "mlp"), **kw), dense(dim, dim, ("mlp", "embed"), **kw)])
        self.box_out = dense(dim, 4, ("embed", None), **kw)
        self.size, self.num_classes, self.queries = tuple(input_shape[:2]), num_classes, queries

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> dict:
        del rngs  # no dropout
        b = x.shape[0]
        f = self.proj(self.backbone(x, train)[2])  # stride 8
        memory = f.reshape(b, -1, f.shape[-1]).astype(jnp.float32)
        pos = self.pos[...][None]
        for layer in self.encoder:
            memory = layer(memory, pos)
        if self.enc_norm is not None:
            memory = self.enc_norm(memory)
        tgt = jnp.zeros((b, self.queries, memory.shape[-1]), memory.dtype)
        qpos = self.query_pos[...][None]
        logits, boxes = [], []
        h, w = self.size
        scale = jnp.array([w, h, w, h], jnp.float32)
        for layer in self.decoder:
            tgt = layer(tgt, qpos, memory, pos)
            z = tgt if self.dec_norm is None else self.dec_norm(tgt)
            logits.append(self.cls(z).astype(jnp.float32))
            for d in self.box:
                z = nnx.relu(d(z))
            cxcywh = jax.nn.sigmoid(self.box_out(z).astype(jnp.float32))
            xyxy = jnp.concatenate([cxcywh[..., :2] - cxcywh[..., 2:] / 2, cxcywh[..., :2] + cxcywh[..., 2:] / 2], -1)
            boxes.append(xyxy * scale)
        return {"logits": jnp.stack(logits, 1), "boxes": jnp.stack(boxes, 1)}

    def detect(
        self, x: jax.Array, *, score_threshold: float = 0.05, iou_threshold: float = 1.0, max_detections: int = 100
    ) -> dict:
        """The last decoder layer's queries as detections: class = argmax over the real classes of the softmax,
        score = its probability; sorted by score, those below `score_threshold` padded (class -1, score 0); K =
        min(queries, max_detections). `iou_threshold` is accepted for the evaluator's interface and ignored: DETR
        uses no NMS."""
        del iou_threshold
        out = self(x, train=False)
        prob = jax.nn.softmax(out["logits"][:, -1], -1)[..., :-1]
        scores, classes = prob.max(-1), prob.argmax(-1)
        h, w = self.size
        boxes = jnp.clip(out["boxes"][:, -1], 0, jnp.array([w, h, w, h], jnp.float32))
        k = min(self.queries, max_detections)
        top, idx = jax.lax.top_k(scores, k)
        keep = top > score_threshold
        return {
            "boxes": jnp.where(keep[..., None], jnp.take_along_axis(boxes, idx[..., None], 1), 0.0),
            "scores": jnp.where(keep, top, 0.0),
            "classes": jnp.where(keep, jnp.take_along_axis(classes, idx, 1), -1).astype(jnp.int32),
        }
