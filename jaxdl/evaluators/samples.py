"""Samples of a generative run: `n` images from the task's sampler (`task.sample`; diffusion options `sampler`,
`steps`, `eta`), written as a PNG grid `<workdir>/samples/<name>_step<step>.png` at each evaluation; metrics: the
samples' pixel mean and std (next to the data's 0.286 / 0.353 for Fashion-MNIST) and the seconds per 1,000 images.
"""

import os
import time

import jax
import numpy as np

from jaxdl.evaluators._images import make_sampler, save_grid
from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator


class Evaluator(BaseEvaluator):
    def __init__(
        self,
        ctx: Context,
        *,
        num_samples: int = 100,
        batch_size: int = 100,
        seed: int = 0,
        sampler: str = "",
        steps: int = 0,
        eta: float = -1.0,
        name: str = "samples",
        **common,
    ):
        super().__init__(ctx, **common)
        if num_samples < 1 or batch_size < 1:
            raise ValueError(f"num_samples={num_samples} and batch_size={batch_size} must be >= 1")
        options = {k: v for k, v in dict(sampler=sampler, steps=steps, eta=eta).items() if v not in ("", 0, -1.0)}
        self.num_samples, self.seed, self.name = num_samples, seed, name
        self._sample = make_sampler(ctx, options, min(batch_size, num_samples))
        self._step = 0

    def evaluate(self, state: dict) -> dict[str, float]:
        self._step = int(jax.device_get(state["step"]))
        return super().evaluate(state)

    def run(self, params, rest) -> dict[str, float]:
        self._sample.compile(params, rest, jax.random.key(self.seed))
        t0 = time.perf_counter()
        images = self._sample(params, rest, jax.random.key(self.seed), self.num_samples)
        seconds = time.perf_counter() - t0
        if self.ctx.workdir:
            save_grid(images[:100], os.path.join(self.ctx.workdir, "samples", f"{self.name}_step{self._step}.png"))
        return {
            "pixel_mean": float(np.mean(images)),
            "pixel_std": float(np.std(images)),
            "sec_per_1000": 1000.0 * seconds / self.num_samples,
        }
