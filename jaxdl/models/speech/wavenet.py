"""WaveNet (van den Oord et al. 2016): an autoregressive model of raw audio over 256 μ-law codes, unconditioned or
conditioned on log-mel frames (a vocoder), with Fast WaveNet generation (Paine et al. 2016).

    model(x, cond=None) -> logits float32 [batch, T, 256]

x int32 [batch, T]: μ-law codes (`jaxdl.audio.mulaw.encode`); logits[:, t] is the distribution of the next sample
x[t + 1] and depends only on x[:t + 1] (causal). cond float32 [batch, T // hop, cond_channels]: log-mel frames,
frame f conditioning outputs f·hop … f·hop + hop − 1 (`cond_channels=0`: unconditioned, cond must be None).

Architecture (paper §2): codes → embedding (the 1×1 convolution of a one-hot input) → `len(dilations)` residual
layers, each a dilated causal convolution of width 2 (the dilation doubles 1, 2, …, 2^(k−1) and repeats `stacks`
times), gated `tanh(W_f * x + V_f c) · σ(W_g * x + V_g c)`, a 1×1 residual projection added to the layer's input and
a 1×1 skip projection summed over layers → ReLU → 1×1 → ReLU → 1×1 → 256 logits. The width-2 convolution is written
as a dense layer over `[x[t − d], x[t]]`, so training (all positions at once) and generation (one position) run the
same matmul. Conditioning (local, §2.5): a width-3 convolution over the frames, upsampled to the sample rate by
repetition (each frame `hop` times), projected into every layer's gates. Receptive field 1 + Σ dilations samples.

Generation. `generate` (Fast WaveNet): every layer keeps a queue of its last `d` inputs (a ring buffer [batch, d,
residual]); one step reads x[t − d] from it and writes x[t], so a sample costs one position's matmuls per layer.
`generate_naive` recomputes the full forward pass over the receptive-field window ending at t for every sample
(the usual baseline, and the reference the cached path is tested equal to: same key → same samples). Both draw
sample t + 1 from `jax.random.categorical(fold_in(key, t), logits / temperature)` and start from `first` (default:
the code of silence). No library ships a Flax WaveNet, hence this module.
"""

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.audio.mulaw import SILENCE
from jaxdl.layers.dense import dense
from jaxdl.layers.dtypes import to_dtype


def _dilations(layers: int, stacks: int) -> tuple[int, ...]:
    return tuple(2**i for i in range(layers)) * stacks


def _shift(x: jax.Array, d: int) -> jax.Array:
    """x[:, t - d] (zeros for t < d) of x [batch, T, C]: the causal delay line of a dilated convolution."""
    return jnp.pad(x, ((0, 0), (d, 0), (0, 0)))[:, : x.shape[1]]


class Model(nnx.Module):
    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int = 256,
        layers: int = 10,
        stacks: int = 1,
        residual: int = 32,
        skip: int = 64,
        cond_channels: int = 0,
        cond_hidden: int = 32,
        hop: int = 80,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        """layers: residual layers per stack (dilations 1 … 2^(layers−1)); stacks: repeats of that cycle;
        residual / skip: channels of the residual stream and of the skip sum; cond_channels: mel bands of the
        conditioning frames (0: unconditioned); cond_hidden: channels of the upsampled conditioning; hop: samples
        per conditioning frame. input_shape: (T,) of a training crop (any T works at call time)."""
        for key, v in dict(layers=layers, stacks=stacks, residual=residual, skip=skip, num_classes=num_classes).items():
            if v < 1:
                raise ValueError(f"config.model.{key}={v}: expected >= 1")
        if cond_channels < 0 or (cond_channels and (cond_hidden < 1 or hop < 1)):
            raise ValueError(
                f"config.model.cond_channels={cond_channels}, cond_hidden={cond_hidden}, hop={hop}: need "
                "cond_channels >= 0 and, when conditioned, cond_hidden >= 1 and hop >= 1"
            )
        del input_shape
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.dilations = _dilations(layers, stacks)
        self.num_classes, self.residual, self.cond_channels, self.hop = num_classes, residual, cond_channels, hop
        self.dtype = to_dtype(dtype)
        self.embed = nnx.Embed(num_classes, residual, dtype=self.dtype, param_dtype=to_dtype(param_dtype), rngs=rngs)
        self.gates = nnx.List([dense(2 * residual, 2 * residual, ("embed", "mlp"), **kw) for _ in self.dilations])
        self.res = nnx.List([dense(residual, residual, ("mlp", "embed"), **kw) for _ in self.dilations])
        self.skips = nnx.List([dense(residual, skip, ("mlp", "embed"), **kw) for _ in self.dilations])
        self.out1 = dense(skip, skip, ("embed", "mlp"), **kw)
        self.out2 = dense(skip, num_classes, ("mlp", "vocab"), **kw)
        if cond_channels:
            self.cond_conv = nnx.Conv(
                cond_channels, cond_hidden, kernel_size=(3,), padding="SAME", dtype=self.dtype, **_plain_kw(kw)
            )
            self.cond_proj = nnx.List(
                [
                    nnx.Linear(cond_hidden, 2 * residual, use_bias=False, dtype=self.dtype, **_plain_kw(kw))
                    for _ in self.dilations
                ]
            )
        else:
            self.cond_conv, self.cond_proj = None, None

    @property
    def receptive_field(self) -> int:
        """Samples an output sees: x[t − receptive_field + 1 … t]."""
        return 1 + sum(self.dilations)

    # ------------------------------------------------------------------------------------------ pieces
    def upsample(self, cond: jax.Array | None, length: int) -> jax.Array | None:
        """Conditioning at the sample rate, float [batch, length, cond_hidden], from frames [batch, F, cond_channels]
        with F · hop == length (None when unconditioned); a clear error for a missing or mis-shaped `cond`."""
        if not self.cond_channels:
            if cond is not None:
                raise ValueError("wavenet: got `cond` but the model is unconditioned (config.model.cond_channels=0)")
            return None
        if cond is None:
            raise ValueError(f"wavenet: conditioned on {self.cond_channels} mel bands but no `cond` was given")
        if cond.ndim != 3 or cond.shape[2] != self.cond_channels or cond.shape[1] * self.hop != length:
            raise ValueError(
                f"wavenet: cond of shape {tuple(cond.shape)} does not fit {length} samples: expected [batch, "
                f"{length} / hop={self.hop} frames, cond_channels={self.cond_channels}]"
            )
        h = jnp.tanh(self.cond_conv(cond.astype(self.dtype)))
        return jnp.repeat(h, self.hop, axis=1)

    def _gate(self, i: int, past: jax.Array, x: jax.Array, c: jax.Array | None) -> jax.Array:
        """tanh(filter) · σ(gate) of layer i from its input at t − d (`past`) and t (`x`), both [..., residual]."""
        z = self.gates[i](jnp.concatenate([past, x], -1))
        if c is not None:
            z = z + self.cond_proj[i](c)
        f, g = jnp.split(z, 2, axis=-1)
        return jnp.tanh(f) * jax.nn.sigmoid(g)

    def _head(self, skip: jax.Array) -> jax.Array:
        return self.out2(jax.nn.relu(self.out1(jax.nn.relu(skip)))).astype(jnp.float32)

    def _stack(self, h: jax.Array, c: jax.Array | None, valid: jax.Array | None = None) -> jax.Array:
        """Logits [batch, T, classes] from embedded inputs h [batch, T, residual]; `valid` bool [batch, T] zeroes
        every layer's input where False (positions before the start of a window: the zero padding of `_shift`)."""
        skip = 0.0
        for i, d in enumerate(self.dilations):
            if valid is not None:
                h = jnp.where(valid[..., None], h, 0)
            a = self._gate(i, _shift(h, d), h, c)
            skip = skip + self.skips[i](a)
            h = h + self.res[i](a)
        return self._head(skip)

    def _check_codes(self, x: jax.Array) -> None:
        if x.ndim != 2 or not jnp.issubdtype(x.dtype, jnp.integer):
            raise ValueError(f"wavenet: expected int μ-law codes [batch, T], got {x.dtype} of shape {tuple(x.shape)}")

    # ------------------------------------------------------------------------------------------ training
    def __call__(
        self, x: jax.Array, cond: jax.Array | None = None, *, train: bool = False, rngs: nnx.Rngs | None = None
    ) -> jax.Array:
        """Next-sample logits float32 [batch, T, num_classes] of codes x int [batch, T]."""
        del train, rngs
        self._check_codes(x)
        return self._stack(self.embed(x), self.upsample(cond, x.shape[1]))

    # ------------------------------------------------------------------------------------------ generation
    def init_queues(self, batch: int) -> list[jax.Array]:
        """Fast WaveNet's per-layer queues: layer i's last d_i inputs, zeros [batch, d_i, residual]."""
        return [jnp.zeros((batch, d, self.residual), self.dtype) for d in self.dilations]

    def step(
        self, queues: list[jax.Array], t: jax.Array, x: jax.Array, c: jax.Array | None = None
    ) -> tuple[jax.Array, list[jax.Array]]:
        """One cached step: logits float32 [batch, classes] of position t from its code x int [batch] and upsampled
        conditioning c [batch, cond_hidden] (or None); returns the updated queues."""
        h = self.embed(x)
        skip, new = 0.0, []
        for i, d in enumerate(self.dilations):
            slot = t % d
            past = jax.lax.dynamic_index_in_dim(queues[i], slot, axis=1, keepdims=False)  # x_i[t - d]
            new.append(jax.lax.dynamic_update_index_in_dim(queues[i], h, slot, axis=1))
            a = self._gate(i, past, h, c)
            skip = skip + self.skips[i](a)
            h = h + self.res[i](a)
        return self._head(skip), new

    def _check_generate(self, length: int, batch: int, cond: jax.Array | None) -> jax.Array | None:
        if length < 1 or batch < 1:
            raise ValueError(f"wavenet.generate: length={length} and batch={batch} must be >= 1")
        if cond is not None and cond.shape[0] != batch:
            raise ValueError(f"wavenet.generate: cond has batch {cond.shape[0]}, expected batch={batch}")
        c = self.upsample(cond, cond.shape[1] * self.hop if cond is not None else length)
        if c is not None and c.shape[1] < length:
            raise ValueError(f"wavenet.generate: cond covers {c.shape[1]} samples, fewer than length={length}")
        return c


def _plain_kw(kw: dict) -> dict:
    """The dense kwargs for plain nnx layers: param_dtype as a jnp dtype, rngs (dtype passed separately)."""
    return dict(param_dtype=to_dtype(kw["param_dtype"]), rngs=kw["rngs"])


def _sample(key: jax.Array, t: jax.Array, logits: jax.Array, temperature: float) -> jax.Array:
    return jax.random.categorical(jax.random.fold_in(key, t), logits / temperature, axis=-1).astype(jnp.int32)


@functools.partial(nnx.jit, static_argnames=("length", "batch", "temperature", "first"))
def generate(
    model: Model,
    key: jax.Array,
    *,
    length: int,
    batch: int = 1,
    cond: jax.Array | None = None,
    temperature: float = 1.0,
    first: int = SILENCE,
) -> jax.Array:
    """Fast WaveNet: `length` sampled codes int32 [batch, length] (x[1 … length] after x[0] = `first`), one cached
    step per sample inside `lax.scan`. cond: frames [batch, F, cond_channels] with F · hop ≥ length."""
    c = model._check_generate(length, batch, cond)

    def body(carry, t):
        queues, x = carry
        logits, queues = model.step(queues, t, x, None if c is None else c[:, t])
        nxt = _sample(key, t, logits, temperature)
        return (queues, nxt), nxt

    x0 = jnp.full((batch,), first, jnp.int32)
    _, out = jax.lax.scan(body, (model.init_queues(batch), x0), jnp.arange(length))
    return out.T


@functools.partial(nnx.jit, static_argnames=("length", "batch", "temperature", "first"))
def generate_naive(
    model: Model,
    key: jax.Array,
    *,
    length: int,
    batch: int = 1,
    cond: jax.Array | None = None,
    temperature: float = 1.0,
    first: int = SILENCE,
) -> jax.Array:
    """The same samples as `generate`, by recomputing the forward pass over the receptive-field window [t − R + 1, t]
    for every t (positions before 0 masked as the training forward's zero padding): O(R) work per sample."""
    c = model._check_generate(length, batch, cond)
    r = model.receptive_field
    pad = r - 1
    codes = jnp.full((batch, pad + length + 1), first, jnp.int32)
    cpad = None if c is None else jnp.pad(c[:, :length], ((0, 0), (pad, 0), (0, 0)))

    def body(codes, t):
        window = jax.lax.dynamic_slice_in_dim(codes, t, r, axis=1)  # positions t - pad … t
        valid = jnp.broadcast_to(jnp.arange(r) >= pad - t, (batch, r))
        cw = None if cpad is None else jax.lax.dynamic_slice_in_dim(cpad, t, r, axis=1)
        logits = model._stack(model.embed(window), cw, valid)[:, -1]
        nxt = _sample(key, t, logits, temperature)
        return jax.lax.dynamic_update_index_in_dim(codes, nxt, pad + t + 1, axis=1), None

    codes, _ = jax.lax.scan(body, codes, jnp.arange(length))
    return codes[:, pad + 1 :]
