"""CLIP-style dual encoder (Radford et al. 2021) with SigLIP's logit bias (Zhai et al. 2023).

- image tower: the project's `resnet` (CIFAR ResNet-6n+2) or `vit`, built with `num_classes=embed_dim`, so its
  final linear layer is the image projection head: [b, h, w, c] -> [b, embed_dim];
- text tower: the project's `bert` encoder (`head="encoder"`: token + position embeddings, post-LN blocks through
  `jaxdl.layers.attention` with padding masked) over UTF-8 byte ids (vocabulary 256, 0 = padding), mean over
  real tokens, then a linear projection: int [b, length] -> [b, embed_dim] (texts truncated to
  `text_length` bytes, as CLIP truncates to its context);
- both embeddings L2-normalized; logits [b_img, b_txt] = exp(t) * <img_i, txt_j> + bias, float32, with the
  learnable log-scale t (init log(1 / init_temperature), exp(t) clipped at max_scale = 100 as in CLIP) and the
  learnable bias (init `init_bias`; SigLIP uses t = log 10, bias = -10; a constant bias leaves the softmax loss
  unchanged).

`model(x, text=tokens)` returns the logits, constrained to ("batch", None) so under data parallelism each device
keeps its rows and XLA gathers the text embeddings (every image is contrasted with the whole global batch).
`encode_image` / `encode_text` give the normalized embeddings (evaluators); `image_features` the unnormalized
image projection (linear probes). BERT's pooler parameters are built by `bert` but unused here (head="encoder"):
they get zero gradients.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.layers.dense import dense
from jaxdl.layers.dtypes import to_dtype
from jaxdl.models.language import bert
from jaxdl.models.vision import resnet, vit
from jaxdl.parallel.rules import constrain

IMAGE_ENCODERS = ("resnet", "vit")
VOCAB = 256  # UTF-8 bytes; 0 is padding (never in a caption)


def l2_normalize(x: jax.Array) -> jax.Array:
    """x / ||x|| over the last axis (norm clamped at 1e-12), float32."""
    x = x.astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class Model(nnx.Module):
    """images float32 [b, h, w, c] and byte ids int [b, length] -> logits float32 [b, b]."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        embed_dim: int = 64,
        image_encoder: str = "resnet",
        image_depth: int = 8,
        image_width: int = 1,
        image_norm: str = "batch",
        image_dim: int = 64,
        image_heads: int = 4,
        patch: int = 4,
        text_length: int = 128,
        text_dim: int = 64,
        text_depth: int = 2,
        text_heads: int = 4,
        text_mlp_dim: int = 128,
        init_temperature: float = 0.07,
        init_bias: float = 0.0,
        max_scale: float = 100.0,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        """image_encoder "resnet": image_depth (6n+2), image_width, image_norm are resnet's depth/width/norm;
        "vit": image_dim, image_depth, image_heads, patch (mlp 2 x image_dim, mean pool). num_classes (the
        dataset's) is not used: the output size is the batch."""
        del num_classes
        if len(input_shape) != 3:
            raise ValueError(f"clip expects [height, width, channels] images, got input_shape={input_shape}")
        if image_encoder not in IMAGE_ENCODERS:
            raise ValueError(f"config.model.image_encoder={image_encoder!r}: choose one of {IMAGE_ENCODERS}")
        if embed_dim < 1 or text_length < 1:
            raise ValueError(f"config.model.embed_dim={embed_dim} and text_length={text_length} must be >= 1")
        if not (init_temperature > 0 and max_scale > 0):
            raise ValueError(f"config.model.init_temperature={init_temperature} and max_scale must be > 0")
        if 1.0 / init_temperature > max_scale:
            raise ValueError(f"config.model.init_temperature={init_temperature}: 1/T exceeds max_scale={max_scale}")
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        if image_encoder == "resnet":
            self.image = resnet.Model(
                input_shape=input_shape,
                num_classes=embed_dim,
                depth=image_depth,
                width=image_width,
                norm=image_norm,
                rngs=rngs,
                **kw,
            )
        else:
            self.image = vit.Model(
                input_shape=input_shape,
                num_classes=embed_dim,
                dim=image_dim,
                depth=image_depth,
                heads=image_heads,
                mlp_dim=2 * image_dim,
                patch=patch,
                pool="mean",
                rngs=rngs,
                **kw,
            )
        self.text = bert.Model(
            input_shape=(text_length,),
            num_classes=1,
            head="encoder",
            vocab_size=VOCAB,
            depth=text_depth,
            dim=text_dim,
            heads=text_heads,
            mlp_dim=text_mlp_dim,
            max_positions=text_length,
            dropout=0.0,
            attention_dropout=0.0,
            pad_id=0,
            rngs=rngs,
            **kw,
        )
        self.text_proj = dense(text_dim, embed_dim, ("embed", None), rngs=rngs, **kw)
        pdt = to_dtype(param_dtype)
        self.log_scale = nnx.Param(jnp.asarray(-math.log(init_temperature), pdt))
        self.bias = nnx.Param(jnp.asarray(init_bias, pdt))
        self.max_log_scale = math.log(max_scale)
        self.text_length = text_length

    def image_features(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """[b, h, w, c] -> unnormalized image projection [b, embed_dim] float32."""
        return self.image(x, train=train).astype(jnp.float32)

    def encode_image(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """[b, h, w, c] -> L2-normalized [b, embed_dim] float32."""
        return l2_normalize(self.image_features(x, train=train))

    def encode_text(self, tokens: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        """byte ids int [b, length] (0 = padding) -> L2-normalized [b, embed_dim]. Texts are truncated to
        their first `text_length` bytes (CLIP truncates to its 77-token context the same way)."""
        if tokens.ndim != 2:
            raise ValueError(f"clip: text must be [batch, length] byte ids, got shape {tokens.shape}")
        tokens = tokens[:, : self.text_length].astype(jnp.int32)
        mask = tokens != 0
        hidden = self.text.encode(tokens, attention_mask=mask, train=train, rngs=rngs)
        return l2_normalize(self.text_proj(bert.mean_pool(hidden, mask)))

    def scale(self) -> jax.Array:
        """exp(t), clipped at max_scale (float32 scalar)."""
        return jnp.exp(jnp.minimum(self.log_scale[...].astype(jnp.float32), self.max_log_scale))

    def logits(self, image_emb: jax.Array, text_emb: jax.Array) -> jax.Array:
        """[b_img, d] x [b_txt, d] normalized embeddings -> scale * cosine + bias [b_img, b_txt] float32."""
        logits = self.scale() * image_emb @ text_emb.T + self.bias[...].astype(jnp.float32)
        return constrain(logits, ("batch", None))

    def __call__(
        self, x: jax.Array, *, text: jax.Array, train: bool = False, rngs: nnx.Rngs | None = None
    ) -> jax.Array:
        return self.logits(self.encode_image(x, train=train), self.encode_text(text, train=train, rngs=rngs))
