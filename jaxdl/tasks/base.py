"""The `Task` interface: what a kind of learning owns (models, losses, phases, batch keys, carried state, evals).

The trainer (`jaxdl.train`, step in `jaxdl.state`) calls only these methods; see `jaxdl.tasks` for the guide.
"""

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
from flax import nnx

# (model, batch, rngs) -> (scalar float32 loss, {name: scalar} metrics); pure, traced inside the jitted step.
LossFn = Callable[[nnx.Module, dict, nnx.Rngs], tuple[jax.Array, dict]]


@dataclasses.dataclass(frozen=True)
class Phase:
    """One gradient update of the train step: `loss` differentiated w.r.t. the parameters of `groups` and applied by
    those groups' optimizers (their own `config.optim_groups.<group>` settings). `groups=None`: all parameters, one
    optimizer (`config.optim`). Phases run in order inside one jitted step, each seeing the parameters the
    previous phases updated (alternating GAN updates); a phase over several groups updates them simultaneously.
    `name` prefixes the phase's metrics ("" for a single-phase task)."""

    loss: LossFn
    groups: tuple[str, ...] | None = None
    name: str = ""


class Task:
    """Base task: one model built from `config.model`, one optimizer, batches from the data loader.

    Subclasses override `loss` (required) and, as needed: `batch_keys`, `groups` + `build` + `phases` (several
    models / optimizers), `init_carry` + `make_batch` (batches produced inside the step), `default_evals`.
    Constructor keyword arguments are the task's options (`config.task.<key>`), checked like model arguments."""

    # parameter groups: names of the built module's top-level submodules, each with its own optimizer; None = one
    groups: tuple[str, ...] | None = None
    # True: the step calls `make_batch` (no data loader, no dataset needed unless an evaluator reads one)
    produces_batches: bool = False
    # keys every training batch must hold (checked on the first batch, before the step compiles)
    batch_keys: tuple[str, ...] = ("input", "label")
    # batch keys the loss or the pipeline own; any other key (e.g. a decoder's "target_in") goes to the model
    not_model_inputs: tuple[str, ...] = ("input", "label", "label_b", "mix", "mask")

    def __init__(self, **options: Any):
        if options:
            raise ValueError(f"config.task.{next(iter(options))} is not an option of task {type(self).__name__}")

    # ---------------------------------------------------------------------------------------------- models
    def check_model_config(self, model_config: Mapping[str, Any]) -> None:
        """Fails naming the bad `config.model` key (before anything is built)."""
        from jaxdl import models

        if not model_config.get("name"):
            raise ValueError("config.model.name is required (it is empty)")
        models.check_kwargs(model_config["name"], {k: v for k, v in model_config.items() if k != "name"})

    def build(
        self,
        model_config: Mapping[str, Any],
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        rngs: nnx.Rngs,
        label_counts=None,
    ) -> nnx.Module:
        """The module the step trains (for `groups`: one module whose top-level attributes are the groups)."""
        from jaxdl import models

        return models.make(
            model_config, input_shape=input_shape, num_classes=num_classes, rngs=rngs, label_counts=label_counts
        )

    def data_info(self, config) -> dict:
        """input_shape / num_classes for building the model of a run without a dataset (`produces_batches`)."""
        raise ValueError(f"config.data.name is empty and task {config.task.name!r} does not define data_info")

    def model_inputs(self, batch: dict) -> dict:
        """Extra keyword inputs of the model: `model(batch["input"], train=..., **model_inputs(batch))`."""
        return {k: v for k, v in batch.items() if k not in self.not_model_inputs}

    def check_batch(self, batch: dict) -> None:
        """The task's own check of the first training batch (host numpy arrays), run before the step compiles:
        e.g. pixels in [0, 1] for a Bernoulli decoder. Fails naming the key and what was found; default: none."""

    # ---------------------------------------------------------------------------------------------- losses
    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        raise NotImplementedError(f"task {type(self).__name__} defines no loss")

    def phases(self) -> tuple[Phase, ...]:
        return (Phase(self.loss),)

    # ------------------------------------------------------------------------------- batches made in the step
    def init_carry(self, key: jax.Array, model: nnx.Module) -> Any:
        """State the task carries between steps (e.g. environment states, a replay index); None = nothing."""
        del key, model
        return None

    def make_batch(self, model: nnx.Module, carry: Any, key: jax.Array) -> tuple[dict, Any]:
        """(batch, new carry) for a task with `produces_batches` (e.g. rollouts in `lax.scan`)."""
        raise NotImplementedError(f"task {type(self).__name__} does not produce batches")

    # ---------------------------------------------------------------------------------------------- evals
    def default_evals(self) -> dict[str, dict]:
        """`config.evals` when the config sets none: name -> spec (see `jaxdl.evaluators`)."""
        return {"main": dict(kind="classify")}


def option_names(cls: type) -> list[str]:
    """The `config.task` keys (constructor keyword arguments) of a task class."""
    params = inspect.signature(cls.__init__).parameters
    return [p for p, v in params.items() if p != "self" and v.kind != inspect.Parameter.VAR_KEYWORD]
