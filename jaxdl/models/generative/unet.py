"""The DDPM ε-network (Ho et al. 2020), scaled down for 28x28 images on CPU: a U-Net over three resolutions
(H, H/2, H/4) with one residual block per level on each side, GroupNorm + SiLU, the timestep as a sinusoidal
embedding (Transformer style) through a 2-layer MLP added inside every residual block, and self-attention (the
project's `jaxdl.layers.attention.Attention` over the H/4 x W/4 positions) at the lowest resolution and in the
middle. Skip connections concatenate the down path's outputs into the up path.

x [b, H, W, C] (noisy images, any real values: the `diffusion` task feeds x_t in [-1, 1]-scale), t int [b] in
[0, T) -> ε prediction float32 [b, H, W, C].
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.attention import Attention
from jaxdl.layers.dense import dense
from jaxdl.layers.norm import make_norm
from jaxdl.models.generative._conv import check_input_shape, conv


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """int/float t [b] -> float32 [b, dim]: [cos(t f_i), sin(t f_i)], f_i = max_period^(-i / (dim/2))."""
    if dim % 2:
        raise ValueError(f"timestep embedding dim={dim} must be even")
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class ResBlock(nnx.Module):
    """GN-SiLU-conv, + dense(time embedding), GN-SiLU-dropout-conv, + (1x1-projected) input: [b,H,W,cin] -> cout."""

    def __init__(self, cin: int, cout: int, temb: int, dropout: float, groups: int, *, kw: dict, rngs: nnx.Rngs):
        self.norm1 = make_norm("group", cin, groups=groups, rngs=rngs, **kw)
        self.conv1 = conv(cin, cout, rngs=rngs, **kw)
        self.temb = dense(temb, cout, ("mlp", "embed"), rngs=rngs, **kw)
        self.norm2 = make_norm("group", cout, groups=groups, rngs=rngs, **kw)
        self.conv2 = conv(cout, cout, rngs=rngs, **kw)
        self.skip = conv(cin, cout, kernel=1, rngs=rngs, **kw) if cin != cout else None
        self.dropout = nnx.Dropout(dropout)

    def __call__(self, x, emb, train: bool, rngs):
        h = self.conv1(nnx.silu(self.norm1(x)))
        h = h + self.temb(emb)[:, None, None, :]
        h = self.dropout(nnx.silu(self.norm2(h)), deterministic=not train, rngs=rngs)
        h = self.conv2(h)
        return (x if self.skip is None else self.skip(x)) + h


class AttnBlock(nnx.Module):
    """x + Attention(GroupNorm(x)) over the H*W positions (non-causal self-attention): [b, H, W, c] -> same."""

    def __init__(self, ch: int, heads: int, groups: int, *, kw: dict, rngs: nnx.Rngs):
        self.norm = make_norm("group", ch, groups=groups, rngs=rngs, **kw)
        self.attn = Attention(ch, heads, use_bias=True, rngs=rngs, **kw)

    def __call__(self, x):
        b, h, w, c = x.shape
        y = self.attn(self.norm(x).reshape(b, h * w, c))
        return x + y.reshape(b, h, w, c)


class Model(nnx.Module):
    """`__call__(x, t)`: ε-prediction (see the module docstring). channels: width at H; the widths per level are
    channels x mults; heads: attention heads at H/4 (channels x mults[-1] must divide by them)."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: int = 32,
        mults: tuple[int, ...] = (1, 2, 2),
        heads: int = 4,
        groups: int = 8,
        dropout: float = 0.0,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        del num_classes  # unconditional
        self.shape = check_input_shape(input_shape, "unet")
        mults = tuple(int(m) for m in mults)
        if len(mults) != 3 or min(mults) < 1:
            raise ValueError(f"config.model.mults={mults}: need 3 positive multipliers (levels H, H/2, H/4)")
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        c = self.shape[2]
        widths = [channels * m for m in mults]
        self.temb_dim = 4 * channels
        self.t1 = dense(channels, self.temb_dim, ("embed", "mlp"), rngs=rngs, **kw)
        self.t2 = dense(self.temb_dim, self.temb_dim, ("mlp", "embed"), rngs=rngs, **kw)
        self.channels = channels
        self.stem = conv(c, channels, rngs=rngs, **kw)
        blk = dict(temb=self.temb_dim, dropout=dropout, groups=groups, kw=kw, rngs=rngs)
        self.down0 = ResBlock(channels, widths[0], **blk)
        self.pool0 = conv(widths[0], widths[0], stride=2, rngs=rngs, **kw)
        self.down1 = ResBlock(widths[0], widths[1], **blk)
        self.pool1 = conv(widths[1], widths[1], stride=2, rngs=rngs, **kw)
        self.down2 = ResBlock(widths[1], widths[2], **blk)
        self.down2_attn = AttnBlock(widths[2], heads, groups, kw=kw, rngs=rngs)
        self.mid1 = ResBlock(widths[2], widths[2], **blk)
        self.mid_attn = AttnBlock(widths[2], heads, groups, kw=kw, rngs=rngs)
        self.mid2 = ResBlock(widths[2], widths[2], **blk)
        self.up2 = ResBlock(2 * widths[2], widths[2], **blk)
        self.up2_attn = AttnBlock(widths[2], heads, groups, kw=kw, rngs=rngs)
        self.upconv2 = conv(widths[2], widths[1], rngs=rngs, **kw)
        self.up1 = ResBlock(2 * widths[1], widths[1], **blk)
        self.upconv1 = conv(widths[1], widths[0], rngs=rngs, **kw)
        self.up0 = ResBlock(2 * widths[0], widths[0], **blk)
        self.out_norm = make_norm("group", widths[0], groups=groups, rngs=rngs, **kw)
        self.out = conv(widths[0], c, rngs=rngs, **kw)

    def __call__(self, x: jax.Array, t: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
        if x.shape[1:] != self.shape or t.shape != x.shape[:1]:
            raise ValueError(f"unet: expected x [b, {self.shape}] and t [b]; got {x.shape} and {t.shape}")
        emb = self.t2(nnx.silu(self.t1(timestep_embedding(t, self.channels))))

        def up(h):  # nearest-neighbour 2x
            return jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)

        h0 = self.down0(self.stem(x), emb, train, rngs)  # H
        h1 = self.down1(self.pool0(h0), emb, train, rngs)  # H/2
        h2 = self.down2_attn(self.down2(self.pool1(h1), emb, train, rngs))  # H/4
        m = self.mid2(self.mid_attn(self.mid1(h2, emb, train, rngs)), emb, train, rngs)
        u = self.up2_attn(self.up2(jnp.concatenate([m, h2], -1), emb, train, rngs))
        u = self.up1(jnp.concatenate([self.upconv2(up(u)), h1], -1), emb, train, rngs)
        u = self.up0(jnp.concatenate([self.upconv1(up(u)), h0], -1), emb, train, rngs)
        return self.out(nnx.silu(self.out_norm(u))).astype(jnp.float32)
