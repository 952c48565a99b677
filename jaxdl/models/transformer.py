"""Transformer encoder classifier with scanned layers: the block family the parallelism strategies exercise.

[batch, length] or [batch, length, features] -> per-position linear embedding + learned positions -> `depth`
pre-norm blocks (self-attention + MLP), stacked on a leading `layers` axis and run with `nnx.scan` so compile
time does not grow with depth -> mean over positions -> logits [batch, num_classes] (float32).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.attention import Attention
from jaxdl.layers.aux_loss import AuxLoss
from jaxdl.layers.dense import dense
from jaxdl.layers.dtypes import to_dtype
from jaxdl.layers.mlp import Mlp
from jaxdl.layers.moe import MoeMlp
from jaxdl.layers.norm import make_norm
from jaxdl.layers.remat import remat as remat_fn
from jaxdl.parallel import rules
from jaxdl.parallel.pipeline import pipeline
from jaxdl.parallel.rules import constrain


class Block(nnx.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x)); [batch, length, embed]."""

    def __init__(
        self, dim, heads, mlp_dim, dropout, moe: dict | None, impl: str, *, head_dim=None, dtype, param_dtype, rngs
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        norm = lambda: make_norm("layer", dim, axes=("embed",), **kw)
        self.norm1, self.norm2 = norm(), norm()
        self.attn = Attention(dim, heads, head_dim=head_dim, attention_impl=impl, **kw)
        if moe:
            self.mlp = MoeMlp(dim, mlp_dim, **moe, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        else:
            self.mlp = Mlp(dim, mlp_dim, dropout=dropout, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(
        self, x: jax.Array, train: bool, rngs: nnx.Rngs | None, return_attention: bool = False
    ) -> tuple[jax.Array, ...]:
        """-> (x, the block's MoE load-balancing loss (0 for a dense block)[, attention probabilities
        [batch, heads, length, length] float32 when return_attention])."""
        if return_attention:
            a, probs = self.attn(self.norm1(x), return_probs=True)
            x = x + a
        else:
            x = x + self.attn(self.norm1(x))
        if isinstance(self.mlp, MoeMlp):
            y, aux = self.mlp(self.norm2(x), train=train)
            balance = aux["load_balance_loss"]
        else:
            y, balance = self.mlp(self.norm2(x), train=train, rngs=rngs), jnp.zeros((), jnp.float32)
        x = constrain(x + y, ("batch", "act_length", "embed"))
        return (x, balance, probs) if return_attention else (x, balance)


class Model(nnx.Module):
    """[batch, length(, features)] -> logits [batch, num_classes] (float32)."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        depth: int = 2,
        dim: int = 64,
        heads: int = 4,
        head_dim: int = 0,
        mlp_dim: int = 128,
        dropout: float = 0.0,
        dtype: str = "float32",
        param_dtype: str = "float32",
        remat: str = "none",
        moe_experts: int = 0,
        moe_top_k: int = 2,
        moe_capacity_factor: float = 1.25,
        moe_groups: int = 0,
        moe_aux_weight: float = 0.01,
        attention_impl: str = "xla",
        pool: str = "mean",
        rngs: nnx.Rngs,
    ):
        """moe_experts > 0 replaces every block's MLP by a top-`moe_top_k` mixture of experts (jaxdl.layers.moe;
        moe_groups 0 = one routing group per batch shard); its load-balancing loss, times moe_aux_weight and
        summed over blocks, is added to the training loss through an `AuxLoss` variable. attention_impl picks the
        attention op (kernels.attention.api: xla | cudnn | pallas | triton | auto). pool: "mean" over positions,
        or "cls" (a learned class token prepended; its output feeds the head). head_dim: each head's width (0 =
        dim // heads; `jaxdl.compress.heads.prune_heads` writes fewer heads of the original width)."""
        if pool not in ("mean", "cls"):
            raise ValueError(f"config.model.pool={pool!r}: use 'mean' or 'cls'")
        length, feat = (input_shape[0], 1) if len(input_shape) == 1 else input_shape
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        self.embed = dense(feat, dim, (None, "embed"), rngs=rngs, **kw)
        pos_init = nnx.with_partitioning(nnx.initializers.normal(0.02), ("length", "embed"))
        self.pool = pool
        self.pos = nnx.Param(pos_init(rngs.params(), (length + (pool == "cls"), dim), to_dtype(param_dtype)))
        if pool == "cls":
            cls_init = nnx.with_partitioning(nnx.initializers.zeros, (None, None, "embed"))
            self.cls = nnx.Param(cls_init(rngs.params(), (1, 1, dim), to_dtype(param_dtype)))

        moe = None
        if moe_experts:
            moe = dict(
                num_experts=moe_experts,
                top_k=moe_top_k,
                capacity_factor=moe_capacity_factor,
                num_groups=moe_groups or None,
            )

        @nnx.split_rngs(splits=depth)
        @nnx.vmap(in_axes=(0,), out_axes=0, axis_size=depth, transform_metadata={nnx.PARTITION_NAME: "layers"})
        def make_blocks(rngs):
            return Block(dim, heads, mlp_dim, dropout, moe, attention_impl, head_dim=head_dim or None, rngs=rngs, **kw)

        self.blocks = make_blocks(rngs)
        self.norm = make_norm("layer", dim, rngs=rngs, **kw)  # unnamed axes: replicated under every strategy
        self.head = dense(dim, num_classes, ("embed", "classes"), rngs=rngs, **kw)
        self.depth, self.remat, self.dropout = depth, remat, dropout
        self.moe, self.moe_aux_weight = bool(moe_experts), moe_aux_weight
        self.aux_loss = AuxLoss(jnp.zeros((), jnp.float32))

    def __call__(
        self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None, return_attention: bool = False
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """-> logits [batch, num_classes]; with `return_attention`, (logits, every layer's attention probabilities
        [depth, batch, heads, length, length] float32, the class token first under pool="cls"): the unfused
        softmax path of `jaxdl.layers.attention` (for explanations; not with pipeline parallelism)."""
        h = self.embed(x[..., None] if x.ndim == 2 else x)
        if self.pool == "cls":
            h = jnp.concatenate([jnp.broadcast_to(self.cls[...].astype(h.dtype), (h.shape[0], 1, h.shape[-1])), h], 1)
        h = constrain(h + self.pos[...].astype(h.dtype), ("batch", "act_length", "embed"))
        probs = None
        if rules.mesh_axis_size("layers") > 1:
            if return_attention:
                raise ValueError("return_attention is not supported with pipeline parallelism (strategy 'pp')")
            h = self._pipelined(h, train)
        elif return_attention:

            @nnx.scan(
                in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0), transform_metadata={nnx.PARTITION_NAME: "layers"}
            )
            def run_probs(carry, block):
                h, balance, p = block(carry[0], train, rngs, return_attention=True)
                return (h, carry[1] + balance), p

            (h, balance), probs = run_probs((h, jnp.zeros((), jnp.float32)), self.blocks)
            self.aux_loss.value = self.moe_aux_weight * balance
        else:
            block_fn = remat_fn(lambda block, h: block(h, train, rngs), self.remat)

            @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry, transform_metadata={nnx.PARTITION_NAME: "layers"})
            def run(carry, block):
                h, balance = block_fn(block, carry[0])
                return h, carry[1] + balance

            h, balance = run((h, jnp.zeros((), jnp.float32)), self.blocks)
            self.aux_loss.value = self.moe_aux_weight * balance
        h = self.norm(h)
        logits = self.head(h[:, 0] if self.pool == "cls" else jnp.mean(h, axis=1)).astype(jnp.float32)
        return (logits, probs) if return_attention else logits

    def _pipelined(self, h: jax.Array, train: bool) -> jax.Array:
        """The blocks as pipeline stages over the mesh axes of `layers` (config.sharding.pipeline_*)."""
        if train and self.dropout > 0:
            raise ValueError("config.model.dropout > 0 is not supported with pipeline parallelism (strategy 'pp')")
        if self.moe:
            raise ValueError("config.model.moe_experts > 0 is not supported with pipeline parallelism (strategy 'pp')")
        mesh, _ = rules.active()
        (axis,) = rules.mesh_axes("layers")
        graphdef, layers = nnx.split(self.blocks)

        def stage_fn(chunk, h):  # chunk: this stage's layers, stacked; h: [microbatch, length, embed]
            def layer(h, params):
                return nnx.merge(graphdef, params)(h, train, None)[0], None

            return jax.lax.scan(layer, h, chunk)[0]

        return pipeline(
            stage_fn,
            layers,
            h,
            mesh=mesh,
            axis=axis,
            num_microbatches=rules.option("pipeline_microbatches") or mesh.shape[axis],
            schedule=rules.option("pipeline_schedule", "gpipe"),
            repeats=rules.option("pipeline_repeats", 1),
            remat=self.remat != "none",
        )
