"""Robust accuracy under FGSM / PGD at several budgets ε (pixel units; see `jaxdl.robust.attacks` for how ε and the
valid range [0, 1] map through the dataset's normalization).

    config.evals.robust = dict(kind="robustness", epsilons=(0.05, 0.1, 0.2), attack="pgd", steps=10, norm="linf")

Metrics: `accuracy_eps<ε>` for each ε (ε = 0: clean accuracy, always reported), over the first `max_examples`
examples of the split (attacks cost `steps` forward+backward passes per example). The model runs with
`train=False`. A gradient-masking sanity check is reported too: `monotone` = 1.0 when the accuracy does not rise
with ε (a rise means the attack is failing, e.g. masked or saturated gradients).
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator
from jaxdl.robust import attacks


def metric_name(eps: float) -> str:
    return f"accuracy_eps{eps:g}"


def per_example_xent(model: nnx.Module, model_inputs: dict | None = None) -> attacks.PerExampleLoss:
    """(x, labels) -> cross-entropy of `model(x, train=False)` per example [batch] float32 (labels < 0 give 0)."""

    def loss_fn(x, labels):
        logits = model(x, train=False, **(model_inputs or {})).astype(jnp.float32)
        return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))

    return loss_fn


class Evaluator(BaseEvaluator):
    """Options: `epsilons` (pixel units, each in [0, 1] for linf, [0, sqrt(d)] for l2), `attack` ("pgd" | "fgsm"),
    `norm` ("linf" | "l2"), `steps` (PGD iterations), `step_size` (pixel units; 0 = 2.5·ε/steps per ε),
    `random_start`, `max_examples` (0 = the whole split), `batch_size` (0 = config.data.eval_batch_size), `seed`."""

    def __init__(
        self,
        ctx: Context,
        *,
        epsilons: tuple = (0.05, 0.1, 0.2),
        attack: str = "pgd",
        norm: str = "linf",
        steps: int = 10,
        step_size: float = 0.0,
        random_start: bool = True,
        max_examples: int = 1000,
        batch_size: int = 0,
        seed: int = 0,
        **common,
    ):
        super().__init__(ctx, **common)
        if attack not in attacks.ATTACKS:
            raise ValueError(f"attack={attack!r} is not one of {attacks.ATTACKS}")
        if not isinstance(epsilons, list | tuple) or not epsilons:
            raise ValueError(f"epsilons={epsilons!r} must be a non-empty list of pixel-unit budgets")
        shape = tuple(ctx.ds_info["input_shape"])
        for i, eps in enumerate(epsilons):
            attacks.check_epsilon(eps, norm, shape, key=f"epsilons[{i}]")
        if steps < 1:
            raise ValueError(f"steps={steps} must be >= 1")
        if step_size < 0 or max_examples < 0:
            raise ValueError(f"step_size={step_size} and max_examples={max_examples} must be >= 0")
        self.space = attacks.input_space(ctx.config.data.name)
        task_space = getattr(ctx.task, "space", None)
        if task_space is not None and task_space != self.space:
            raise ValueError(
                f"config.task.input_space={ctx.task.input_space!r} does not match config.data.name="
                f"{ctx.config.data.name!r}: the adversarial task would attack in another pixel normalization"
            )
        self.epsilons = sorted({0.0, *(float(e) for e in epsilons)})
        self.batch_size = batch_size or ctx.config.data.eval_batch_size
        self.max_examples, self.seed = max_examples, seed
        kw = dict(norm=norm, steps=steps, random_start=random_start)
        from jax.sharding import NamedSharding, PartitionSpec

        def counts(params, rest, batch, key):
            """[len(epsilons)] correct counts of the batch (mask 0 rows and labels < 0 ignored)."""
            with ctx.trace_context():
                model = nnx.merge(ctx.graphdef, params, rest)
                inputs = ctx.task.model_inputs(batch)
                loss_fn = per_example_xent(model, inputs)
                valid = batch["mask"] * (batch["label"] >= 0)
                out = []
                for i, eps in enumerate(self.epsilons):
                    size = step_size or attacks.default_step_size(eps, steps)
                    x_adv = attacks.attack(
                        attack, loss_fn, batch["input"], batch["label"], jax.random.fold_in(key, i), self.space,
                        eps=eps, step_size=size, **kw,
                    )  # fmt: skip
                    pred = jnp.argmax(model(x_adv, train=False, **inputs), axis=-1)
                    out.append(jnp.sum((pred == batch["label"]) * valid))
                return jnp.stack(out).astype(jnp.float32), jnp.sum(valid)

        self._counts = jax.jit(
            counts,
            in_shardings=(ctx.param_sharding, ctx.rest_sharding, ctx.batch_sharding, None),
            out_shardings=NamedSharding(ctx.mesh, PartitionSpec()),
        )

    def run(self, params, rest) -> dict[str, float]:
        correct, total = 0.0, 0.0
        key = jax.random.key(self.seed)
        for i, batch in enumerate(self.ctx.batches(self.split, self.batch_size)):
            if self.max_examples and total >= self.max_examples:
                break
            if self.max_examples:  # count only the first max_examples examples (the rest of the batch is masked)
                keep = jnp.arange(batch["mask"].shape[0]) < (self.max_examples - total)
                batch = dict(batch, mask=jax.device_put(batch["mask"] * keep, batch["mask"].sharding))
            c, n = jax.device_get(self._counts(params, rest, batch, jax.random.fold_in(key, i)))
            correct, total = correct + c, total + float(n)
        accs = [float(c / total) for c in correct]
        out = {metric_name(e): a for e, a in zip(self.epsilons, accs, strict=True)}
        out["monotone"] = float(all(b <= a + 1e-9 for a, b in zip(accs, accs[1:], strict=False)))
        out["examples"] = total
        return out
