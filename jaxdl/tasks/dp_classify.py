"""Differentially private classification: DP-SGD (Abadi et al. 2016) with Poisson sampling and per-example clipping.

    config.task = dict(name="dp_classify", dataset="fashion_mnist", noise_multiplier=1.1, delta=1e-5,
                       clip_norm=1.0, expected_batch_size=256)
    config.data.name = "fashion_mnist"   # the evaluators' test split (must be the same dataset)

Sampling. The privacy accountant (`jaxdl.privacy.accounting`) assumes Poisson sampling: every step includes each
of the N training examples independently with probability q = expected_batch_size / N. The trainer's loader
(fixed-size batches of shuffled epochs) is a different mechanism with no accountant, so this task draws its own
batches inside the step (`produces_batches`): a Bernoulli(q) mask over the N examples from the step's key, the
drawn indices padded to a static `max_batch_size` (rows weighted 0 beyond the draw), the rows fetched from the
host-resident split by `jax.pure_callback` (deterministic in (seed, step): resume is exact). `max_batch_size`
defaults to the 1 - 1e-12 quantile of Binomial(N, q); a larger draw would be truncated (which no accountant covers),
so the count of examples dropped that way is logged as `train/overflow` (expected 0).

Gradient: `jaxdl.privacy.dpsgd.dp_objective` (per-example gradients by vmap, clipping to `clip_norm`, Gaussian noise
σ·C on the sum, divided by the expected batch size). The model runs with `train=False` (no dropout, no batch
statistics: both would make one example's gradient depend on the others' or on unaccounted randomness).
ε at `delta` is written by the `privacy` evaluator (a default evaluator) as `eval/privacy/epsilon`.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.privacy import accounting, dpsgd
from jaxdl.tasks._host_data import HostSplit
from jaxdl.tasks.base import Task as BaseTask


class Task(BaseTask):
    produces_batches = True
    batch_keys = ("input", "label", "mask")
    not_model_inputs = (*BaseTask.not_model_inputs, "drawn")

    def __init__(
        self,
        *,
        dataset: str = "",
        split: str = "train",
        data_dir: str = "",
        noise_multiplier: float | None = None,
        delta: float | None = None,
        clip_norm: float = 1.0,
        expected_batch_size: int = 256,
        max_batch_size: int = 0,
        sampling: str = "poisson",
        accountant: str = "rdp",
    ):
        super().__init__()
        if not dataset:
            raise ValueError("config.task.dataset is required: the training split DP-SGD samples from (Poisson)")
        if noise_multiplier is None or not noise_multiplier > 0:
            raise ValueError(
                f"config.task.noise_multiplier={noise_multiplier!r}: DP-SGD needs a noise multiplier σ > 0 (noise "
                "std σ·clip_norm on the summed clipped gradients); jaxdl.privacy.accounting.noise_for_epsilon finds "
                "σ for a target ε"
            )
        if delta is None or not 0 < delta < 1:
            raise ValueError(f"config.task.delta={delta!r}: the δ of (ε, δ)-DP is required, in (0, 1) (e.g. 1e-5)")
        if sampling not in accounting.SAMPLINGS:
            raise ValueError(
                f"config.task.sampling={sampling!r}: the accountant assumes {accounting.SAMPLINGS} sampling; "
                "shuffled fixed-size batches have no accountant in dp-accounting, so this run is refused"
            )
        if accountant not in accounting.ACCOUNTANTS:
            raise ValueError(f"config.task.accountant={accountant!r} is not one of {accounting.ACCOUNTANTS}")
        if not clip_norm > 0 or expected_batch_size < 1 or max_batch_size < 0:
            raise ValueError(
                f"config.task.clip_norm={clip_norm} must be > 0, expected_batch_size={expected_batch_size} >= 1, "
                f"max_batch_size={max_batch_size} >= 0"
            )
        self.dataset, self.split, self.data_dir = dataset, split, data_dir
        self.noise_multiplier, self.delta, self.clip_norm = float(noise_multiplier), float(delta), float(clip_norm)
        self.expected_batch_size, self._max_batch_size = expected_batch_size, max_batch_size
        self.sampling, self.accountant = sampling, accountant
        self.host = HostSplit(dataset, split, data_dir)

    # ------------------------------------------------------------------------------------------ the data
    def data_info(self, config) -> dict:
        from jaxdl import data

        return data.info(self.dataset, self.data_dir or None)

    @property
    def num_examples(self) -> int:
        return len(self.host)

    @property
    def sampling_rate(self) -> float:
        """q = expected_batch_size / N."""
        n = self.num_examples
        if self.expected_batch_size > n:
            raise ValueError(f"config.task.expected_batch_size={self.expected_batch_size} exceeds the {n} examples")
        return self.expected_batch_size / n

    @property
    def max_batch_size(self) -> int:
        """The static number of rows of a step's batch (≥ every Poisson draw except with probability 1e-12)."""
        if self._max_batch_size:
            return self._max_batch_size
        from scipy.stats import binom

        return int(binom.isf(1e-12, self.num_examples, self.sampling_rate)) + 1

    def make_batch(self, model: nnx.Module, carry, key: jax.Array) -> tuple[dict, None]:
        """A Poisson sample: each example in with probability q; rows [max_batch_size] with `mask` 1 on the draw."""
        n, rows = self.num_examples, self.max_batch_size
        drawn = jax.random.bernoulli(key, self.sampling_rate, (n,))
        count = jnp.sum(drawn, dtype=jnp.int32)
        (indices,) = jnp.nonzero(drawn, size=rows, fill_value=0)
        batch = self.host.gather(indices)
        batch["mask"] = (jnp.arange(rows) < count).astype(jnp.float32)
        batch["drawn"] = count
        return batch, carry

    # ------------------------------------------------------------------------------------------ the loss
    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        rows = batch["input"].shape[0]
        if rows != self.max_batch_size:
            raise ValueError(
                f"dp_classify got {rows} of its {self.max_batch_size} rows: config.train.grad_accum must be 1 "
                "(the noise is added once per Poisson batch; microbatches would each add it)"
            )
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        inputs = self.model_inputs(batch)
        apply = lambda p, x: nnx.merge(graphdef, p, rest, copy=True)(x, train=False, **inputs)
        objective = dpsgd.dp_objective(
            dpsgd.xent_example_loss(apply),
            clip_norm=self.clip_norm,
            noise_multiplier=self.noise_multiplier,
            expected_batch_size=float(self.expected_batch_size),
        )
        w = batch["mask"]
        loss = objective(params, batch["input"], batch["label"], w, jax.random.key_data(rngs.sampling()))
        logits = jax.lax.stop_gradient(apply(params, batch["input"]))
        correct = (jnp.argmax(logits, -1) == batch["label"]) * w
        return loss, {
            "accuracy": jnp.sum(correct) / jnp.maximum(jnp.sum(w), 1.0),
            "batch_size": jnp.sum(w),
            "overflow": jnp.maximum(batch["drawn"] - rows, 0).astype(jnp.float32),
        }

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="classify"), "privacy": dict(kind="privacy")}
