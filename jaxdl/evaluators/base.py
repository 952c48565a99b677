"""The `Evaluator` interface and what every evaluator is handed (`Context`): the run's config, task, mesh,
shardings and data access. Evaluators see the model, never the optimizer."""

import dataclasses
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import jax
from flax import nnx
from ml_collections import ConfigDict

from jaxdl import tasks


@dataclasses.dataclass
class Context:
    """What an evaluator may use. `trace_context()` is the activation-rules context of the mesh (enter it around
    anything that traces the model); `batch_sharding` shards a global batch over the data axes."""

    config: ConfigDict
    task: tasks.Task
    graphdef: Any
    ds_info: dict
    mesh: jax.sharding.Mesh
    batch_sharding: jax.sharding.NamedSharding
    param_sharding: Any
    rest_sharding: Any
    trace_context: Callable
    workdir: str = ""
    _sources: dict = dataclasses.field(default_factory=dict)

    def source(self, split: str):
        """The random-access source of `split` of the run's dataset (loaded once, in memory when it fits)."""
        from jaxdl import data

        if not self.config.data.name:
            raise ValueError(f"split {split!r}: this run has no dataset (config.data.name is empty)")
        if split not in self._sources:
            d = self.config.data
            self._sources[split] = data.memory.cache(
                data.load(d.name, split, d.data_dir or None),
                mode=d.cache,
                budget_mb=d.memory_budget_mb,
                what=f"dataset {d.name!r} split {split!r}",
            )
        return self._sources[split]

    def batches(self, split: str, batch_size: int) -> Iterator[dict]:
        """Every example of `split` once, sharded device batches with a "mask" (0 on padding rows)."""
        from jaxdl import data

        return data.eval_batches(
            self.source(split), dataset=self.config.data.name, batch_size=batch_size, sharding=self.batch_sharding
        )


class Evaluator:
    """Base: `config.evals.<name> = dict(kind=..., every=..., split=..., use_ema=..., <options>)`.

    `every`: steps between runs (None: `config.train.eval_every`; 0: only at the end); `split`: the split it reads
    (None: `config.data.eval_split`); `use_ema`: evaluate `state["ema"]` instead of the parameters. Subclasses
    take their options as keyword arguments and define `run(model) -> {metric: float}`."""

    def __init__(self, ctx: Context, *, every: int | None = None, split: str | None = None, use_ema: bool = False):
        self.ctx = ctx
        self.every = ctx.config.train.eval_every if every is None else every
        self.split = split or ctx.config.data.eval_split
        self.use_ema = use_ema
        if self.every < 0:
            raise ValueError(f"every={every} must be >= 0 (0: only at the end)")

    def due(self, step: int, last: bool) -> bool:
        return last or bool(self.every and step % self.every == 0)

    def model(self, state: dict) -> tuple[Any, Any]:
        """(params, rest) this evaluator evaluates from a train state."""
        if self.use_ema:
            if "ema" not in state:
                raise ValueError("use_ema=True but the run keeps no EMA (set config.train.ema_decay > 0)")
            return state["ema"], state["rest"]
        return state["params"], state["rest"]

    def evaluate(self, state: dict) -> dict[str, float]:
        params, rest = self.model(state)
        return self.run(params, rest)

    def run(self, params, rest) -> dict[str, float]:
        raise NotImplementedError

    def merged(self, params, rest) -> nnx.Module:
        return nnx.merge(self.ctx.graphdef, params, rest)


def option_names(cls: type) -> list[str]:
    """The spec keys an evaluator class accepts (its and its bases' keyword arguments, minus `ctx`)."""
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        for p, v in inspect.signature(klass.__init__).parameters.items():
            if p not in ("self", "ctx") and v.kind != inspect.Parameter.VAR_KEYWORD and p not in names:
                names.append(p)
    return names
