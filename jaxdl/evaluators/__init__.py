"""Evaluators, chosen in the config (big_vision's `config.evals`): one module per kind, the module name is the key.

    config.evals.main = dict(kind="classify")                       # writes eval/accuracy, eval/loss
    config.evals.beam4 = dict(kind="translate", decoder="beam", beam_size=4, every=0)   # eval/beam4/exact_match

An empty `config.evals` means the task's `default_evals()`. Each runs at its own cadence (`every` steps; 0 = only
at the end) and writes `eval/<name>/<metric>` (`main`: `eval/<metric>`) to metrics.jsonl and TensorBoard.
Kinds: `classify` (accuracy, loss), `perplexity` (loss, perplexity, bits per token/byte), `translate` (greedy /
beam exact match and sacrebleu BLEU), `robustness` (FGSM/PGD robust accuracy at pixel-unit ε), `privacy` (DP-SGD's
ε at δ from dp-accounting), `fairness` (per-group rating metrics and gaps). `python -m jaxdl.evaluate --workdir=DIR`
runs them on a saved run.
"""

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from jaxdl.evaluators.base import Context, Evaluator, option_names

__all__ = ["Context", "Evaluator", "available", "check_specs", "get_class", "make_all", "metric_key", "specs"]


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base" and not m.name.startswith("_"))


def get_class(kind: str) -> type[Evaluator]:
    if kind not in available():
        raise ValueError(f"evaluator kind {kind!r} is not one of {available()}")
    return importlib.import_module(f"{__name__}.{kind}").Evaluator


def specs(config, task) -> dict[str, dict[str, Any]]:
    """name -> spec of the run's evaluators: `config.evals`, or the task's defaults when it sets none."""
    evals = config.get("evals", None)
    chosen = {k: dict(v) for k, v in evals.items()} if evals else task.default_evals()
    return {name: dict(spec) for name, spec in chosen.items()}


def check_specs(evals: Mapping[str, Mapping[str, Any]]) -> None:
    """Fails naming the bad `config.evals.<name>.<key>` (unknown kind or option) before anything compiles."""
    for name, spec in evals.items():
        if not isinstance(spec, Mapping) or "kind" not in spec:
            raise ValueError(f"config.evals.{name} must be a dict with a 'kind' (one of {available()})")
        if not str(name).isidentifier():
            raise ValueError(f"config.evals.{name}: evaluator names must be identifiers (they name metrics)")
        try:
            cls = get_class(spec["kind"])
        except ValueError as e:
            raise ValueError(f"config.evals.{name}.kind: {e}") from None
        known = option_names(cls)
        for key in spec:
            if key != "kind" and key not in known:
                raise ValueError(f"config.evals.{name}.{key} is not an option of evaluator {spec['kind']!r}: {known}")


def make_all(evals: Mapping[str, Mapping[str, Any]], ctx: Context) -> dict[str, Evaluator]:
    check_specs(evals)
    out = {}
    for name, spec in evals.items():
        options = {k: v for k, v in spec.items() if k != "kind"}
        try:
            out[name] = get_class(spec["kind"])(ctx, **options)
        except (TypeError, ValueError) as e:
            raise ValueError(f"config.evals.{name}: {e}") from e
    return out


def metric_key(name: str, metric: str) -> str:
    """The metrics.jsonl / TensorBoard key of `metric` of evaluator `name`."""
    return f"eval/{metric}" if name == "main" else f"eval/{name}/{metric}"
