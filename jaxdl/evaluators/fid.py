"""FID (FMNIST classifier) and KID: the Fréchet distance (Heusel et al. 2017) and the kernel inception distance
(Bińkowski et al. 2018) between features of generated images and of a split's real images, where the features are
the penultimate layer (the input of `head`) of a Fashion-MNIST classifier trained by this project — not Inception
features, so the numbers are comparable only with other "FID (FMNIST classifier)" numbers from the same
classifier run.

    config.evals.fid = dict(kind="fid", classifier="workdirs/fmnist_lenet", num_samples=10000, split="test")

`classifier`: the workdir of a `classify` run whose model has a `head` layer (e.g. `lenet`); its images go
through that run's dataset preprocessing (e.g. `fashion_mnist`'s mean/std normalization) from [0, 1]. Samples:
`num_samples` images of the task's sampler (`sampler`/`steps`/`eta` for diffusion), key `seed`; reals: the first
`num_real` examples of `split` (0: all). Metrics: fid, kid (unbiased MMD² with the cubic polynomial kernel
k(x, y) = (xᵀy / d + 1)³, mean over `kid_subsets` random subsets of `kid_subset_size`), sec_per_1000 (sampling
wall time per 1,000 images, compilation excluded). A PNG grid of the first 100 samples is written to
`<workdir>/samples/<name>_step<step>.png`.
"""

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from flax import nnx

from jaxdl.evaluators._images import make_sampler, save_grid
from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean [d], covariance [d, d] with ddof=1) of features [n, d], in float64."""
    f = np.asarray(features, np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||μ1 - μ2||² + Tr(Σ1 + Σ2 - 2 (Σ1 Σ2)^½): the squared 2-Wasserstein distance of two Gaussians. The matrix
    square root is scipy's `sqrtm`; a singular product gets ε = 1e-6 on both diagonals (as in the reference FID
    code), and the imaginary part rounding leaves is dropped."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        eye = np.eye(s1.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((s1 + eye) @ (s2 + eye))
    covmean = np.real(covmean)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def kernel_distance(f1: np.ndarray, f2: np.ndarray, subsets: int, subset_size: int, seed: int = 0) -> float:
    """KID: the mean over `subsets` random subsets (size min(subset_size, n1, n2), without replacement) of the
    unbiased MMD² between features f1 [n1, d] and f2 [n2, d] under k(x, y) = (xᵀy / d + 1)³."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    d, m = f1.shape[1], min(subset_size, len(f1), len(f2))
    if m < 2:
        raise ValueError(f"KID needs >= 2 features on each side, got {len(f1)} and {len(f2)}")
    rng = np.random.default_rng(seed)
    kern = lambda a, b: (a @ b.T / d + 1.0) ** 3
    total = 0.0
    for _ in range(subsets):
        x, y = f1[rng.choice(len(f1), m, replace=False)], f2[rng.choice(len(f2), m, replace=False)]
        kxx, kyy, kxy = kern(x, x), kern(y, y), kern(x, y)
        total += (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2.0 * kxy.mean()
    return float(total / subsets)


class _Identity(nnx.Module):
    def __call__(self, x):
        return x


@functools.lru_cache(maxsize=4)
def _classifier(workdir: str, step: int | None):
    """(feature function: images [n, H, W, C] in [0, 1] -> float32 [n, d], the classifier run's dataset name)."""
    from jaxdl import data
    from jaxdl.state import restore_run

    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise FileNotFoundError(f"classifier={workdir!r} is not a run directory (no checkpoints/ in it)")
    run = restore_run(workdir, step, devices=[jax.devices()[0]])
    if run.config.task.name != "classify":
        raise ValueError(f"classifier={workdir!r} is a {run.config.task.name!r} run; need a classify run")
    params, rest = jax.device_get(run.state["params"]), jax.device_get(run.state["rest"])
    model = nnx.merge(run.graphdef, jax.tree.map(jnp.asarray, params), jax.tree.map(jnp.asarray, rest))
    if not hasattr(model, "head"):
        raise ValueError(f"classifier={workdir!r}: model {run.config.model.name!r} has no `head` layer to cut off")
    model.head = _Identity()  # the penultimate activations come out instead of the logits
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, train=False).astype(jnp.float32))
    name, shape = run.config.data.name, tuple(run.ds_info["input_shape"])

    def features(images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        if tuple(images.shape[1:]) != shape:
            raise ValueError(f"classifier={workdir!r} takes images {shape}; got {tuple(images.shape[1:])}")
        out = []
        for i in range(0, len(images), batch_size):
            chunk = np.asarray(images[i : i + batch_size], np.float32) * 255.0
            x = data.preprocess(name, {"image": chunk, "label": np.zeros(len(chunk), np.int64)})["input"]
            out.append(np.asarray(forward(state, jnp.asarray(x))))
        return np.concatenate(out)

    return features, name


class Evaluator(BaseEvaluator):
    def __init__(
        self,
        ctx: Context,
        *,
        classifier: str = "",
        classifier_step: int = -1,
        num_samples: int = 10000,
        num_real: int = 0,
        batch_size: int = 500,
        seed: int = 0,
        sampler: str = "",
        steps: int = 0,
        eta: float = -1.0,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        name: str = "fid",
        **common,
    ):
        super().__init__(ctx, **common)
        if not classifier:
            raise ValueError("classifier is required: the workdir of a Fashion-MNIST classify run (see fid.py)")
        if num_samples < 2 or batch_size < 1 or num_real < 0:
            raise ValueError(f"need num_samples={num_samples} >= 2, batch_size={batch_size} >= 1, num_real >= 0")
        self.features, _ = _classifier(classifier, None if classifier_step < 0 else classifier_step)
        options = {k: v for k, v in dict(sampler=sampler, steps=steps, eta=eta).items() if v not in ("", 0, -1.0)}
        self.num_samples, self.num_real, self.seed, self.name = num_samples, num_real, seed, name
        self.kid_subsets, self.kid_subset_size = kid_subsets, kid_subset_size
        self._sample = make_sampler(ctx, options, min(batch_size, num_samples))
        self._real = None
        self._step = 0

    def real_features(self) -> np.ndarray:
        if self._real is None:
            images = []
            for batch in self.ctx.batches(self.split, 1000):
                keep = np.asarray(batch["mask"]) > 0
                images.append(np.asarray(batch["input"])[keep])
            images = np.concatenate(images)
            if self.num_real:
                images = images[: self.num_real]
            if images.min() < 0 or images.max() > 1:
                raise ValueError(
                    f"fid: split {self.split!r} of {self.ctx.config.data.name!r} is not in [0, 1] "
                    f"(min {images.min():.3g}); use a [0, 1] dataset such as 'fashion_mnist_unit'"
                )
            self._real = self.features(images)
        return self._real

    def evaluate(self, state: dict) -> dict[str, float]:
        self._step = int(jax.device_get(state["step"]))
        return super().evaluate(state)

    def run(self, params, rest) -> dict[str, float]:
        real = self.real_features()
        key = jax.random.key(self.seed)
        self._sample.compile(params, rest, key)
        t0 = time.perf_counter()
        images = self._sample(params, rest, key, self.num_samples)
        seconds = time.perf_counter() - t0
        if self.ctx.workdir:
            save_grid(images[:100], os.path.join(self.ctx.workdir, "samples", f"{self.name}_step{self._step}.png"))
        fake = self.features(images)
        fid = frechet_distance(*gaussian_stats(fake), *gaussian_stats(real))
        kid = kernel_distance(fake, real, self.kid_subsets, self.kid_subset_size, self.seed)
        return {"fid": fid, "kid": kid, "sec_per_1000": 1000.0 * seconds / self.num_samples}
