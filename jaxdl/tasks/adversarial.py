"""Adversarial training (Madry et al. 2018): minimize the cross-entropy of PGD (or FGSM) adversarial examples,
min_θ E max_{||δ|| ≤ ε} L(θ, x + δ, y), the inner max approximated by `steps` of projected gradient ascent.

    config.task = dict(name="adversarial", input_space="fashion_mnist", epsilon=0.1, steps=7, norm="linf")

ε and `step_size` are in pixel units (images in [0, 1]); `input_space` names the dataset whose normalization maps
them (it must be `config.data.name`'s: the `robustness` evaluator checks it). The attack runs the model with
`train=False` on the current parameters held fixed (`stop_gradient`: the outer gradient is taken at the attack
point, Danskin's theorem), then the loss is the ordinary batch loss on the adversarial inputs (`clean_weight` > 0
mixes in the clean loss, Goodfellow et al.'s α). Metrics: loss, accuracy (on the adversarial batch), clean_accuracy.
"""

import jax
from flax import nnx

from jaxdl.evaluators.robustness import per_example_xent
from jaxdl.losses import batch_loss
from jaxdl.robust import attacks
from jaxdl.tasks.base import Task as BaseTask


class Task(BaseTask):
    def __init__(
        self,
        *,
        input_space: str = "",
        epsilon: float = 0.1,
        norm: str = "linf",
        attack: str = "pgd",
        steps: int = 7,
        step_size: float = 0.0,
        random_start: bool = True,
        clean_weight: float = 0.0,
        eval_epsilons: tuple = (0.05, 0.1, 0.2),
    ):
        super().__init__()
        if not input_space:
            raise ValueError("config.task.input_space is required: the dataset whose pixel normalization maps ε")
        self.space = attacks.input_space(input_space, key="config.task.input_space")
        self.input_space = input_space
        if attack not in attacks.ATTACKS:
            raise ValueError(f"config.task.attack={attack!r} is not one of {attacks.ATTACKS}")
        if norm not in attacks.NORMS:
            raise ValueError(f"config.task.norm={norm!r} is not one of {attacks.NORMS}")
        if norm == "linf":  # the L2 bound needs the input shape: checked in `build`
            attacks.check_epsilon(epsilon, norm, (), key="config.task.epsilon")
        if not (isinstance(epsilon, int | float) and epsilon >= 0):
            raise ValueError(f"config.task.epsilon={epsilon!r} must be a pixel-unit budget >= 0")
        if steps < 1 or step_size < 0:
            raise ValueError(f"config.task.steps={steps} must be >= 1 and config.task.step_size={step_size} >= 0")
        if not 0 <= clean_weight <= 1:
            raise ValueError(f"config.task.clean_weight={clean_weight} must be in [0, 1]")
        self.epsilon, self.norm, self.attack, self.steps = float(epsilon), norm, attack, steps
        self.step_size = step_size or attacks.default_step_size(epsilon, steps)
        self.random_start, self.clean_weight, self.eval_epsilons = random_start, clean_weight, tuple(eval_epsilons)

    def build(self, model_config, *, input_shape, **kw):
        if self.norm == "l2":
            attacks.check_epsilon(self.epsilon, "l2", tuple(input_shape), key="config.task.epsilon")
        return super().build(model_config, input_shape=input_shape, **kw)

    def adversarial_inputs(self, model: nnx.Module, batch: dict, key: jax.Array) -> jax.Array:
        """The attack's inputs for `batch["input"]` [batch, ...] (same shape/dtype), gradient-stopped."""
        graphdef, state = nnx.split(model)
        frozen = nnx.merge(graphdef, jax.lax.stop_gradient(state))
        loss_fn = per_example_xent(frozen, self.model_inputs(batch))
        x_adv = attacks.attack(
            self.attack, loss_fn, batch["input"], batch["label"], key, self.space,
            eps=self.epsilon, norm=self.norm, steps=self.steps, step_size=self.step_size,
            random_start=self.random_start,
        )  # fmt: skip
        return jax.lax.stop_gradient(x_adv)

    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        if "label_b" in batch:
            raise ValueError("config.data.augment mixup/cutmix is not supported by the adversarial task")
        x_adv = self.adversarial_inputs(model, batch, rngs.sampling())
        inputs = self.model_inputs(batch)
        logits = model(x_adv, train=True, rngs=rngs, **inputs)
        loss, acc = batch_loss(logits, batch)
        metrics = {"accuracy": acc}
        if self.clean_weight:
            clean_loss, clean_acc = batch_loss(model(batch["input"], train=True, rngs=rngs, **inputs), batch)
            loss = (1 - self.clean_weight) * loss + self.clean_weight * clean_loss
            metrics["clean_accuracy"] = clean_acc
        else:  # clean accuracy for the log only (no gradient)
            logits = jax.lax.stop_gradient(model(batch["input"], train=False, **inputs))
            metrics["clean_accuracy"] = batch_loss(logits, batch)[1]
        return loss, metrics

    def default_evals(self) -> dict[str, dict]:
        return {
            "main": dict(kind="classify"),
            "robust": dict(kind="robustness", epsilons=self.eval_epsilons, norm=self.norm, steps=10, every=0),
        }
