"""Tasks: one module per kind of learning, chosen by `config.task.name` (default `classify`); the module name is
the key. A task owns the loss of a batch, the batch keys it needs, its parameter groups, and its default
evaluators; the trainer owns everything else (mesh, shardings, grad accumulation, NaN guard, EMA, checkpoints).

Adding a task: a module `jaxdl/tasks/<name>.py` with `class Task(jaxdl.tasks.base.Task)` (or, outside the
package, `jaxdl.tasks.register(name, cls)`), overriding
  - `loss(model, batch, rngs) -> (scalar, {name: scalar})`: pure, traced in the jitted step; `rngs` has streams
    `dropout` and `sampling`; change non-`Param` variables of `model` (running statistics, counters) to carry
    non-gradient state: the step keeps them.
  - `batch_keys`; `default_evals()` -> {name: dict(kind=..., ...)}; options as `__init__` keyword arguments
    (`config.task.<option>`, unknown keys fail).
GAN shape (two models, two optimizers, alternating updates in one step):
    groups = ("generator", "discriminator")
    def build(self, model_config, **kw): return Pair(generator=..., discriminator=...)   # an nnx.Module
    def phases(self): return (Phase(self.d_loss, ("discriminator",), "d"), Phase(self.g_loss, ("generator",), "g"))
  each group's optimizer is `config.optim` updated by `config.optim_groups.<group>`; phase metrics log as
  `train/d/loss`, ... A phase over ("a", "b") updates both groups at once from one loss.
RL shape (batches made inside the step from carried state, PureJaxRL style):
    produces_batches = True
    def init_carry(self, key, model): return env_states          # pytree, checkpointed with the run
    def make_batch(self, model, carry, key): ...lax.scan rollout...; return batch, carry
  no data loader runs (`config.data.name` may be empty); resume restores the carry bitwise.
EMA: `config.train.ema_decay > 0` keeps `state["ema"]` (the parameters' moving average, checkpointed); an
evaluator with `use_ema=True` evaluates it.

Adding an evaluator: a module `jaxdl/evaluators/<kind>.py` with `class Evaluator(jaxdl.evaluators.base.Evaluator)`
defining `run(model) -> {metric: float}` (its options are keyword arguments of `__init__`); choose it with
`config.evals.<name> = dict(kind="<kind>", every=N, split="test", ...)`; it writes `eval/<name>/<metric>`
(the evaluator named `main` writes `eval/<metric>`). `python -m jaxdl.evaluate --workdir=DIR` runs them on a
saved checkpoint.
"""

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from jaxdl.tasks.base import Phase, Task, option_names

__all__ = ["Phase", "Task", "available", "get_class", "make", "register"]

_REGISTERED: dict[str, type[Task]] = {}


def register(name: str, cls: type[Task]) -> None:
    """Makes `cls` available as `config.task.name=name` (for tasks defined outside this package)."""
    if name in _modules():
        raise ValueError(f"task name {name!r} is taken by jaxdl.tasks.{name}")
    _REGISTERED[name] = cls


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base" and not m.name.startswith("_"))


def available() -> list[str]:
    return sorted([*_modules(), *_REGISTERED])


def get_class(name: str) -> type[Task]:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in _modules():
        raise ValueError(f"config.task.name={name!r} is not a task; available: {', '.join(available())}")
    return importlib.import_module(f"{__name__}.{name}").Task


def make(task_config: Mapping[str, Any]) -> Task:
    """The task `task_config["name"]` with the other keys as its options (an unknown key fails, naming it)."""
    options = {k: v for k, v in dict(task_config).items() if k != "name"}
    cls = get_class(task_config["name"])
    known = option_names(cls)
    for key in options:
        if key not in known:
            raise ValueError(f"config.task.{key} is not an option of task {task_config['name']!r}; it has: {known}")
    return cls(**options)
