"""Helpers of the generative evaluators: a jitted sampler of the run's task (`task.sample(model, key, n,
**options)`), chunked so memory stays bounded, and sample grids written as PNG files."""

import os

import jax
import numpy as np
from flax import nnx
from PIL import Image


def make_sampler(ctx, options: dict, batch_size: int):
    """(params, rest, key, n) -> float32 numpy [n, H, W, C] in [0, 1]: `ctx.task.sample` in jitted chunks of
    `batch_size` (chunk i uses fold_in(key, i)); `sample.compile(params, rest, key)` compiles it ahead. ValueError naming the task if it cannot sample."""
    task = ctx.task
    if not hasattr(task, "sample"):
        raise ValueError(f"task {ctx.config.task.name!r} has no sampler (tasks with one: vae, gan, diffusion)")
    if hasattr(task, "check_sample_options"):
        task.check_sample_options(options)

    def chunk(params, rest, key):
        with ctx.trace_context():
            return task.sample(nnx.merge(ctx.graphdef, params, rest), key, batch_size, **options)

    compiled = {}

    def compile_(params, rest, key):  # ahead of time, so timing `sample` measures sampling, not compilation
        if "fn" not in compiled:
            compiled["fn"] = jax.jit(chunk).lower(params, rest, key).compile()
        return compiled["fn"]

    def sample(params, rest, key, n: int) -> np.ndarray:
        fn = compile_(params, rest, key)
        out = [np.asarray(fn(params, rest, jax.random.fold_in(key, i))) for i in range(-(-n // batch_size))]
        return np.concatenate(out)[:n]

    sample.compile = compile_
    return sample


def grid(images: np.ndarray, cols: int = 10) -> np.ndarray:
    """[n, H, W, C] in [0, 1] -> uint8 [rows·(H+1)+1, cols·(W+1)+1] or [..., 3] tile image with 1-pixel gaps."""
    n, h, w, c = images.shape
    rows = -(-n // cols)
    out = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1, c), np.float32)
    for i, im in enumerate(images):
        r, k = divmod(i, cols)
        out[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + k * (w + 1) : 1 + k * (w + 1) + w] = im
    out = (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return out[..., 0] if c == 1 else out


def save_grid(images: np.ndarray, path: str, cols: int = 10, scale: int = 2) -> str:
    """Writes `grid(images)` (nearest-upscaled by `scale`) to the PNG `path`; returns the path."""
    img = Image.fromarray(grid(images, cols))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    img.save(path)
    return path
