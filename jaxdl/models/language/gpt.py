"""GPT-style decoder-only language model with scanned layers and a KV cache for generation.

tokens int32 [batch, seq] -> token embedding (+ learned positions, or RoPE inside attention) -> dropout ->
`depth` pre-norm blocks (x + drop(attn(norm(x))), x + mlp(norm(x)); causal self-attention with optional GQA and
optional q/k/v/out biases, tanh-approximate GELU MLP with biases), stacked on a leading `layers` axis and run with
`nnx.scan` -> final norm -> logits float32 [batch, seq, vocab] (vocab = `num_classes`; the output projection is
the transposed token embedding when `tie_embeddings`). With positions="learned", norm_eps=1e-5, attention_bias
this is GPT-2 (`jaxdl.convert.hf_gpt2` loads Hugging Face GPT-2 checkpoints).

Output head (`jaxdl.models.language._lm_head`): `head="full"` (default) is the projection above; `head="sampled"` or
`"hierarchical"` (options `num_sampled`, `proposal`, `proposal_power`, `sample_unique`, `tree`) trains through
`label_losses(tokens, labels, train=True, rngs=...)` -> per-position losses float32 [batch, seq] (the trainer's
`uses_label_losses` protocol, see `jaxdl.train`), never building training logits, while `__call__` and
`decode_step` return logits of the exact distribution (sampled: full softmax over the same weights; hierarchical:
exact log-probabilities), so evaluation and generation are exact.

Generation (see `jaxdl.decode` for the jitted greedy/sampling/beam loops): `init_cache(batch, max_len)` allocates
`{"k", "v": [layers, batch, max_len, kv_heads, head_dim], "index": int32 []}` (index = slots filled, shared by the
rows), and `decode_step(tokens [batch, t], cache) -> (logits [batch, t, vocab], cache)` appends `t` tokens: one
call on the prompt is the prefill, then one call per generated token. Its logits equal the full forward pass's
at the same positions. `decode_step` is the `jaxdl.decode` step-function interface (cache rows on axis 1).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.attention import Attention
from jaxdl.layers.dtypes import to_dtype
from jaxdl.layers.mlp import Mlp
from jaxdl.layers.norm import check_norm, make_norm
from jaxdl.layers.remat import remat as remat_fn
from jaxdl.models.language import _lm_head
from jaxdl.parallel import rules
from jaxdl.parallel.rules import constrain

NORMS = ("layer", "rms")
POSITIONS = ("rope", "learned")
CACHE_BATCH_AXIS = 1  # rows of the cache's k/v arrays [layers, batch, max_len, kv_heads, head_dim]


class Block(nnx.Module):
    """Pre-norm decoder block on [batch, seq, embed]."""

    def __init__(
        self,
        dim,
        heads,
        kv_heads,
        mlp_dim,
        dropout,
        norm,
        eps,
        rope,
        rope_base,
        bias,
        impl,
        *,
        dtype,
        param_dtype,
        rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm1 = make_norm(norm, dim, eps=eps, axes=("embed",), **kw)
        self.norm2 = make_norm(norm, dim, eps=eps, axes=("embed",), **kw)
        self.attn = Attention(
            dim,
            heads,
            kv_heads=kv_heads,
            causal=True,
            rope=rope,
            rope_base=rope_base,
            use_bias=bias,
            attention_impl=impl,
            **kw,
        )
        self.drop = nnx.Dropout(dropout)
        self.mlp = Mlp(dim, mlp_dim, dropout=dropout, **kw)

    def __call__(self, x: jax.Array, positions: jax.Array, train: bool, rngs: nnx.Rngs | None) -> jax.Array:
        x = x + self.drop(self.attn(self.norm1(x), positions=positions), deterministic=not train, rngs=rngs)
        x = x + self.mlp(self.norm2(x), train=train, rngs=rngs)
        return constrain(x, ("batch", "act_length", "embed"))

    def cached(self, x, positions, index, k_cache, v_cache):
        """Inference step on t new tokens (no dropout): -> (x, k_cache, v_cache)."""
        a, k_cache, v_cache = self.attn.cached(self.norm1(x), positions, index, k_cache, v_cache)
        x = x + a
        return x + self.mlp(self.norm2(x), train=False, rngs=None), k_cache, v_cache


class Model(nnx.Module):
    """tokens [batch, seq] -> logits [batch, seq, vocab] (float32); vocab = num_classes."""

    EXTRA_ARGS = staticmethod(_lm_head.options)  # the output head's keys, taken as **head_options

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        depth: int = 2,
        dim: int = 64,
        heads: int = 4,
        num_kv_heads: int = 0,
        mlp_dim: int = 0,
        dropout: float = 0.0,
        norm: str = "layer",
        norm_eps: float = 1e-6,
        positions: str = "rope",
        rope_base: float = 10000.0,
        max_len: int = 0,
        tie_embeddings: bool = True,
        attention_bias: bool = False,
        dtype: str = "float32",
        param_dtype: str = "float32",
        remat: str = "none",
        attention_impl: str = "xla",
        rngs: nnx.Rngs,
        **head_options,
    ):
        """num_kv_heads: key/value heads (0 = heads; fewer = GQA, 1 = MQA). mlp_dim 0 = 4 * dim. norm: "layer"
        (LayerNorm) or "rms" (RMSNorm), with epsilon norm_eps (GPT-2: 1e-5). attention_bias adds biases to the
        q/k/v/output projections (GPT-2 has them; the MLP always has biases). positions: "rope" (rotary, in
        attention) or "learned" (a [max_len, dim] table; max_len 0 = input_shape[0], which also bounds
        generation). attention_impl picks the training attention kernel (kernels.attention.api: xla | cudnn |
        pallas | triton | auto). head_options: the output layer's keys (head, num_sampled, ...; label_counts from
        the trainer), see `jaxdl.models.language._lm_head.options`."""
        if len(input_shape) != 1:
            raise ValueError(f"gpt: input_shape must be (seq,) of token ids, got {tuple(input_shape)}")
        check_norm(norm, choices=NORMS)
        if positions not in POSITIONS:
            raise ValueError(f"config.model.positions={positions!r}: choose one of {POSITIONS}")
        if not norm_eps > 0:
            raise ValueError(f"config.model.norm_eps={norm_eps}: must be > 0")
        if num_classes < 2:
            raise ValueError(f"gpt: num_classes (the vocabulary size) must be >= 2, got {num_classes}")
        opts = _lm_head.options(**head_options)
        head = opts["head"]
        _lm_head.check(opts, tie_embeddings=tie_embeddings, model="gpt")
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        self.vocab, self.dim, self.depth, self.remat, self.dropout = num_classes, dim, depth, remat, dropout
        self.positions, self.tie, self.head_kind = positions, tie_embeddings, head
        self.uses_label_losses = head != "full"  # the trainer's protocol: train through label_losses
        self.max_len = max_len or input_shape[0]
        self.kv_heads, self.head_dim = num_kv_heads or heads, dim // heads
        self.dtype = to_dtype(dtype)
        emb_init = nnx.with_partitioning(nnx.initializers.normal(0.02), ("vocab", "embed"))
        self.embed = nnx.Embed(num_classes, dim, embedding_init=emb_init, **{k: to_dtype(v) for k, v in kw.items()},
                               rngs=rngs)  # fmt: skip
        if positions == "learned":
            pos_init = nnx.with_partitioning(nnx.initializers.normal(0.02), ("length", "embed"))
            self.pos = nnx.Param(pos_init(rngs.params(), (self.max_len, dim), to_dtype(param_dtype)))
        self.drop = nnx.Dropout(dropout)
        args = (dim, heads, self.kv_heads, mlp_dim or 4 * dim, dropout, norm, norm_eps, positions == "rope", rope_base,
                attention_bias)  # fmt: skip

        @nnx.split_rngs(splits=depth)
        @nnx.vmap(in_axes=(0,), out_axes=0, axis_size=depth, transform_metadata={nnx.PARTITION_NAME: "layers"})
        def make_blocks(rngs):
            return Block(*args, attention_impl, rngs=rngs, **kw)

        self.blocks = make_blocks(rngs)
        self.norm = make_norm(norm, dim, eps=norm_eps, axes=("embed",), rngs=rngs, **kw)
        if head != "full":
            tied = self.embed if tie_embeddings else None
            self.head = _lm_head.make(dim, num_classes, tied=tied, rngs=rngs, **kw, **opts)
        elif not tie_embeddings:
            self.head = nnx.Linear(
                dim,
                num_classes,
                dtype=to_dtype(dtype),
                param_dtype=to_dtype(param_dtype),
                kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ("embed", "vocab")),
                bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("vocab",)),
                rngs=rngs,
            )

    def _embed(self, tokens: jax.Array, positions: jax.Array) -> jax.Array:
        if tokens.ndim != 2:
            raise ValueError(f"gpt: tokens must be [batch, seq], got shape {tuple(tokens.shape)}")
        h = self.embed(tokens.astype(jnp.int32))
        if self.positions == "learned":
            h = h + self.pos[...][positions].astype(h.dtype)
        return h

    def _logits(self, h: jax.Array) -> jax.Array:
        h = self.norm(h)
        if self.head_kind != "full":
            return _lm_head.logits(self.head, h)
        logits = self.embed.attend(h) if self.tie else self.head(h)
        return logits.astype(jnp.float32)

    def _check_length(self, end: int) -> None:
        if self.positions == "learned" and end > self.max_len:
            raise ValueError(f"gpt: {end} positions exceed the learned table (config.model.max_len={self.max_len})")

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        """tokens int [batch, seq] -> logits float32 [batch, seq, vocab] (of the exact distribution)."""
        return self._logits(self._hidden(x, train, rngs))

    def label_losses(
        self, x: jax.Array, labels: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None
    ) -> jax.Array:
        """tokens int [batch, seq], labels int [batch, seq] -> -log p(label) float32 [batch, seq], 0 at labels < 0.

        train=True: the head's training loss (sampled: K negatives drawn from rngs' `sampling` stream, else
        `dropout`); train=False: the exact cross-entropy. The full head computes the logits."""
        h = self._hidden(x, train, rngs)
        if self.head_kind == "full":
            return _lm_head.full_losses(self._logits(h), labels)
        return self.head(self.norm(h), labels, train=train, rngs=rngs)

    def _hidden(self, x: jax.Array, train: bool, rngs: nnx.Rngs | None) -> jax.Array:
        """tokens [batch, seq] -> last block's output [batch, seq, dim] (before the final norm)."""
        if rules.mesh_axis_size("layers") > 1:
            raise ValueError("gpt does not support pipeline parallelism (config.sharding.strategy with 'pp')")
        if x.ndim != 2:
            raise ValueError(f"gpt: tokens must be [batch, seq], got shape {tuple(x.shape)}")
        self._check_length(x.shape[1])
        use_dropout = train and self.dropout > 0
        if use_dropout and rngs is None:
            raise ValueError("gpt: train=True with dropout > 0 needs rngs (nnx.Rngs(dropout=key))")
        positions = jnp.arange(x.shape[1], dtype=jnp.int32)
        h = self.drop(self._embed(x, positions), deterministic=not train, rngs=rngs)
        h = constrain(h, ("batch", "act_length", "embed"))
        # one dropout key per layer, scanned with the blocks (an Rngs object cannot be mutated inside nnx.scan)
        keys = jax.random.split(rngs.dropout() if use_dropout else jax.random.key(0), self.depth)
        block_fn = remat_fn(lambda block, h, key: block(h, positions, train, nnx.Rngs(dropout=key)), self.remat)

        @nnx.scan(in_axes=(nnx.Carry, 0, 0), out_axes=nnx.Carry, transform_metadata={nnx.PARTITION_NAME: "layers"})
        def run(h, block, key):
            return block_fn(block, h, key)

        return run(h, self.blocks, keys)

    # ----------------------------------------------------------------------------------------------- KV cache
    def init_cache(self, batch: int, max_len: int, dtype=None) -> dict:
        """An empty cache for `batch` rows and `max_len` positions (k/v in the compute dtype unless `dtype`)."""
        self._check_length(max_len)
        shape = (self.depth, batch, max_len, self.kv_heads, self.head_dim)
        zeros = jnp.zeros(shape, dtype or self.dtype)
        return {"k": zeros, "v": zeros, "index": jnp.zeros((), jnp.int32)}

    def decode_step(self, tokens: jax.Array, cache: dict) -> tuple[jax.Array, dict]:
        """tokens [batch, t] at positions index .. index+t-1 -> (logits [batch, t, vocab] float32, updated cache).

        The caller keeps index + t <= max_len (a write past the end would be clamped by XLA, not reported)."""
        if cache["k"].shape[1] != tokens.shape[0]:
            raise ValueError(f"decode_step: tokens have {tokens.shape[0]} rows, the cache {cache['k'].shape[1]}")
        index = cache["index"]
        positions = index + jnp.arange(tokens.shape[1], dtype=jnp.int32)
        h = self._embed(tokens, positions)

        @nnx.scan(
            in_axes=(nnx.Carry, 0, 0, 0), out_axes=(nnx.Carry, 0, 0), transform_metadata={nnx.PARTITION_NAME: "layers"}
        )
        def run(h, block, k, v):
            return block.cached(h, positions, index, k, v)

        h, k, v = run(h, self.blocks, cache["k"], cache["v"])
        return self._logits(h), {"k": k, "v": v, "index": index + tokens.shape[1]}

    def prefill(self, prompt: jax.Array, max_len: int) -> tuple[jax.Array, dict]:
        """A fresh cache of `max_len` slots filled with `prompt` [batch, P] -> (logits [batch, P, vocab], cache)."""
        if prompt.shape[1] > max_len:
            raise ValueError(f"prefill: prompt length {prompt.shape[1]} exceeds max_len={max_len}")
        return self.decode_step(prompt, self.init_cache(prompt.shape[0], max_len))
