"""Knowledge distillation (Hinton, Vinyals & Dean 2015): a student (`config.model`) trained on the soft targets of a
frozen teacher (a trained classification run) mixed with the hard labels.

    config.task = dict(name="distill", teacher="workdirs/teacher_run", temperature=4.0, alpha=0.9)

loss = α T² KL(softmax(t / T) || softmax(s / T)) + (1 - α) CE(s, y), averaged over the batch (`distill_loss`).
The T² factor keeps the soft term's gradient magnitude independent of T: d/ds of T² KL is T (p_s^T - p_t^T).

The teacher is restored once from its run (`jaxdl.state.restore_run`, its latest checkpoint or `teacher_step`) when
the task is made (so a bad path fails at config validation), and lives in the trained module as the frozen group
`teacher` beside the optimized group `student` (`groups = ("student",)`: only the student gets an optimizer and
gradients; the teacher's weights are checkpointed with the run, unchanged). The module's `__call__` is the
student's, so evaluators, `jaxdl.evaluate` and `jaxdl.export` see the student.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxdl.tasks.base import Phase
from jaxdl.tasks.base import Task as BaseTask


def distill_loss(
    student_logits: jax.Array, teacher_logits: jax.Array, labels: jax.Array, temperature: float, alpha: float
) -> tuple[jax.Array, dict]:
    """(scalar loss, {soft, hard, accuracy}) of `[batch, classes]` logits and int `[batch]` labels:
    α T² mean KL(p_t^T || p_s^T) + (1 - α) mean CE(s, y). The teacher's logits get no gradient."""
    t = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32)) / temperature
    s = student_logits.astype(jnp.float32)
    log_ps, log_pt = jax.nn.log_softmax(s / temperature), jax.nn.log_softmax(t)
    soft = jnp.mean(jnp.sum(jnp.exp(log_pt) * (log_pt - log_ps), axis=-1)) * temperature**2
    hard = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(s, labels))
    acc = jnp.mean(jnp.argmax(s, -1) == labels)
    return alpha * soft + (1.0 - alpha) * hard, {"soft": soft, "hard": hard, "accuracy": acc}


@functools.lru_cache(maxsize=4)
def _restore_teacher(workdir: str, step: int | None):
    """(graphdef, params, rest as host numpy, ds_info, config) of a trained run, restored once per process."""
    from jaxdl.state import restore_run

    run = restore_run(workdir, step, devices=[jax.devices()[0]])
    if run.config.task.name != "classify":
        raise ValueError(f"config.task.teacher={workdir!r} is a {run.config.task.name!r} run; need a classify run")
    params, rest = jax.device_get(run.state["params"]), jax.device_get(run.state["rest"])
    return run.graphdef, params, rest, run.ds_info, run.config


class Distilled(nnx.Module):
    """student + frozen teacher; calling it calls the student: `[batch, ...]` -> logits `[batch, classes]`."""

    def __init__(self, student: nnx.Module, teacher: nnx.Module):
        self.student, self.teacher = student, teacher

    def __call__(self, x, train: bool = False, rngs: nnx.Rngs | None = None, **kwargs):
        return self.student(x, train=train, rngs=rngs, **kwargs)


class Task(BaseTask):
    groups = ("student",)

    def __init__(self, *, teacher: str = "", teacher_step: int = -1, temperature: float = 4.0, alpha: float = 0.9):
        super().__init__()
        if not teacher:
            raise ValueError("config.task.teacher is required: the workdir of a trained classify run")
        if temperature <= 0 or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"need config.task.temperature={temperature} > 0 and 0 <= config.task.alpha={alpha} <= 1")
        self.teacher, self.temperature, self.alpha = teacher, float(temperature), float(alpha)
        self.teacher_step = None if teacher_step < 0 else teacher_step
        self._teacher = _restore_teacher(teacher, self.teacher_step)  # fails here on a bad path

    def build(self, model_config, *, input_shape, num_classes, rngs, label_counts=None):
        graphdef, params, rest, ds_info, tconfig = self._teacher
        if tuple(ds_info["input_shape"]) != tuple(input_shape) or ds_info["num_classes"] != num_classes:
            raise ValueError(
                f"config.task.teacher was trained on {tconfig.data.name!r} (input {tuple(ds_info['input_shape'])}, "
                f"{ds_info['num_classes']} classes); the student's data has input {tuple(input_shape)}, "
                f"{num_classes} classes"
            )
        student = super().build(model_config, input_shape=input_shape, num_classes=num_classes, rngs=rngs)
        teacher = nnx.merge(graphdef, jax.tree.map(jnp.asarray, params), jax.tree.map(jnp.asarray, rest))
        return Distilled(student, teacher)

    def loss(self, model: Distilled, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        if "label_b" in batch or "mask" in batch:
            raise ValueError("the distill task takes plain batches (no mixup/CutMix, no padding masks)")
        s = model.student(batch["input"], train=True, rngs=rngs, **self.model_inputs(batch))
        t = model.teacher(batch["input"], train=False, **self.model_inputs(batch))
        return distill_loss(s, t, batch["label"], self.temperature, self.alpha)

    def phases(self) -> tuple[Phase, ...]:
        return (Phase(self.loss, ("student",)),)
