"""Training-time image augmentation on host batches: random crop with padding, horizontal flip, mixup, CutMix.

`make_augment(config.data.augment)` returns `augment(batch, rng) -> batch` or None when everything is off. The
TrainLoader calls it with a generator seeded by (seed, step, process), so augmented batches are a pure function
of the step like the rest of the stream (resume-exact, reproducible per seed). Inputs are preprocessed
(normalized) images [batch, height, width, channels]; crop padding fills with 0, the normalized mean.

Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) mix each example with a random partner of the same host
batch with one λ ~ Beta(α, α) per batch and add "label_b" (the partner's label) and "mix" (λ per example) to the
batch; jaxdl.losses weights the two cross-entropies by λ and 1-λ. With both on, each batch uses one of the two
(probability 1/2), as in timm.

`mlm_probability` > 0 applies BERT's masked-LM corruption (jaxdl.data.mlm) to token-id inputs [batch, length]:
it rewrites "input" and replaces "label" with the masked-LM targets (-1 at unchosen positions). It cannot be
combined with the image keys or mixup.
"""

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from jaxdl.config import AUGMENT_DEFAULTS
from jaxdl.data import mlm

DEFAULTS = AUGMENT_DEFAULTS  # the config.data.augment schema

Augment = Callable[[dict[str, np.ndarray], np.random.Generator], dict[str, np.ndarray]]


def check_keys(cfg: Mapping[str, Any]) -> None:
    """Errors name the unknown or out-of-range config.data.augment key (no dataset needed)."""
    for key in cfg:
        if key not in DEFAULTS:
            raise ValueError(f"config.data.augment.{key} is unknown; known: {sorted(DEFAULTS)}")
    for key in ("crop_padding", "mixup_alpha", "cutmix_alpha"):
        if cfg.get(key, 0) < 0:
            raise ValueError(f"config.data.augment.{key} must be >= 0, got {cfg[key]}")
    if not 0 <= cfg.get("mlm_probability", 0) < 1:
        raise ValueError(f"config.data.augment.mlm_probability must be in [0, 1), got {cfg['mlm_probability']}")


def check_config(cfg: Mapping[str, Any], input_shape: tuple[int, ...]) -> None:
    """Errors name the config.data.augment key that cannot apply to inputs of `input_shape`."""
    check_keys(cfg)
    if cfg.get("mlm_probability"):
        if len(input_shape) != 1:
            raise ValueError(
                f"config.data.augment.mlm_probability needs token-id inputs [length]; this dataset's are {input_shape}"
            )
        others = [k for k in ("crop_padding", "flip", "mixup_alpha", "cutmix_alpha") if cfg.get(k)]
        if others:
            raise ValueError(f"config.data.augment.mlm_probability cannot be combined with {others}")
    image = len(input_shape) == 3
    for key in ("crop_padding", "flip", "cutmix_alpha"):
        if cfg.get(key) and not image:
            raise ValueError(
                f"config.data.augment.{key} needs image inputs [h, w, c]; this dataset's are {input_shape}"
            )


def random_crop(x: np.ndarray, padding: int, rng: np.random.Generator) -> np.ndarray:
    """Pads h and w by `padding` (zeros) and takes a random original-size window per example."""
    b, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    dy, dx = rng.integers(0, 2 * padding + 1, size=(2, b))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(1, 2))  # [b, dy, dx, c, h, w], a view
    return np.ascontiguousarray(windows[np.arange(b), dy, dx].transpose(0, 2, 3, 1))  # one gather for the batch


def random_flip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirrors a random half of the examples left-right."""
    flip = rng.random(x.shape[0]) < 0.5
    return np.where(flip[:, None, None, None], x[:, :, ::-1], x)


def mixup(batch: dict, alpha: float, rng: np.random.Generator) -> dict:
    lam = float(rng.beta(alpha, alpha))
    perm = rng.permutation(len(batch["label"]))
    x = batch["input"]
    return _mixed(batch, (lam * x + (1.0 - lam) * x[perm]).astype(x.dtype), perm, lam)


def cutmix(batch: dict, alpha: float, rng: np.random.Generator) -> dict:
    """Pastes one random box (area ≈ 1-λ) of each partner; λ is then the exact kept area fraction."""
    x = batch["input"].copy()
    _, h, w, _ = x.shape
    lam = float(rng.beta(alpha, alpha))
    cut_h, cut_w = int(h * np.sqrt(1.0 - lam)), int(w * np.sqrt(1.0 - lam))
    cy, cx = rng.integers(0, h), rng.integers(0, w)
    y0, y1 = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, h)
    x0, x1 = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, w)
    perm = rng.permutation(x.shape[0])
    x[:, y0:y1, x0:x1] = batch["input"][perm, y0:y1, x0:x1]
    return _mixed(batch, x, perm, 1.0 - (y1 - y0) * (x1 - x0) / (h * w))


def _mixed(batch: dict, x: np.ndarray, perm: np.ndarray, lam: float) -> dict:
    out = dict(batch, input=x, label_b=batch["label"][perm])
    out["mix"] = np.full(len(perm), lam, np.float32)
    return out


def make_augment(cfg: Mapping[str, Any]) -> Augment | None:
    cfg = {**DEFAULTS, **dict(cfg)}
    if not any(cfg.values()):
        return None

    def augment(batch: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        if cfg["mlm_probability"] > 0:
            return mlm.augment(batch, rng, float(cfg["mlm_probability"]))
        x = batch["input"]
        if cfg["crop_padding"]:
            x = random_crop(x, int(cfg["crop_padding"]), rng)
        if cfg["flip"]:
            x = random_flip(x, rng)
        batch = dict(batch, input=x)
        use_mixup, use_cutmix = cfg["mixup_alpha"] > 0, cfg["cutmix_alpha"] > 0
        if use_mixup and use_cutmix:
            use_mixup = rng.random() < 0.5
            use_cutmix = not use_mixup
        if use_mixup:
            return mixup(batch, cfg["mixup_alpha"], rng)
        if use_cutmix:
            return cutmix(batch, cfg["cutmix_alpha"], rng)
        return batch

    return augment
