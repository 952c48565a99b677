"""Model registry: one module per model family, each with a `Model(nnx.Module)` class, grouped by domain.

    jaxdl/models/transformer.py   transformer (the scanned encoder every sharding strategy exercises; vit's base)
    jaxdl/models/basic/           logistic mlp cnn1d gru (the MNIST-1D paper's models)
    jaxdl/models/vision/          lenet resnet vgg vit
    jaxdl/models/language/        gpt bert seq2seq lstm_seq2seq rnn_lm (+ _lm_head.py, their output heads)

The registry key is the module name (`config.model.name="gpt"` finds `jaxdl.models.language.gpt`), so adding a
family is adding a module to a domain folder (or a new domain folder with an `__init__.py`) and nothing else; two
modules with the same name anywhere under jaxdl/models fail at lookup, naming both. Every `Model`
takes keyword arguments only; `input_shape`, `num_classes` and `rngs` come from the trainer (from the dataset),
the rest from `config.model` (minus `name`). Models map `[batch, *input_shape]` inputs to float32 logits
`[batch, num_classes]` (sequence models: `[batch, length, vocab]`) and are called as
`model(x, train=..., rngs=..., **extra)`, where `extra` holds the batch's other model inputs (e.g. an
encoder-decoder's `target_in`; see `jaxdl.train.model_inputs`).

A model whose constructor takes `label_counts` also gets the training data's label counts from the trainer: a
zero-argument function returning int64 [num_classes] (`jaxdl.data.label_counts` of the train split, computed on
its first call), for output layers built from token frequencies (unigram proposals, Huffman trees); None when
the builder has no dataset.
"""

import functools
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

from flax import nnx

from jaxdl.layers.remat import check_policy

_PROVIDED = ("input_shape", "num_classes", "rngs", "label_counts")  # label_counts: only to models that take it


@functools.cache
def _index() -> dict[str, str]:
    """Registry key -> module path: the public modules of jaxdl/models and of its public subpackages (one level)."""
    index: dict[str, str] = {}

    def add(name: str, module: str) -> None:
        if name in index:
            raise ValueError(f"model name {name!r} is defined twice: {index[name]} and {module} (rename one)")
        index[name] = module

    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        if not info.ispkg:
            add(info.name, f"{__name__}.{info.name}")
            continue
        package = importlib.import_module(f"{__name__}.{info.name}")
        for sub in pkgutil.iter_modules(package.__path__):
            if not sub.name.startswith("_") and not sub.ispkg:
                add(sub.name, f"{package.__name__}.{sub.name}")
    return index


def available() -> list[str]:
    """The registry keys (config.model.name values), sorted."""
    return sorted(_index())


def module_name(name: str) -> str:
    """The module that defines model `name`, e.g. "gpt" -> "jaxdl.models.language.gpt"."""
    index = _index()
    if name not in index:
        raise ValueError(f"config.model.name={name!r} is not a model; available: {', '.join(sorted(index))}")
    return index[name]


def get_class(name: str) -> type[nnx.Module]:
    """The `Model` class of registry key `name` (ValueError naming config.model.name for an unknown one)."""
    return importlib.import_module(module_name(name)).Model


def _init_params(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword arguments of `cls.__init__`, following `**kwargs` into the base classes (e.g. vit -> transformer)
    or, for a class with `EXTRA_ARGS` (a function), into that function's keyword arguments (e.g. the language
    models' output-head options, `jaxdl.models.language._lm_head.options`)."""
    params: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        sig = inspect.signature(klass.__init__).parameters
        if "EXTRA_ARGS" in vars(klass):  # **kwargs are exactly these: stop here
            sig = {k: v for k, v in sig.items() if v.kind != inspect.Parameter.VAR_KEYWORD}
            sig |= inspect.signature(klass.EXTRA_ARGS).parameters
        params.update({k: v for k, v in sig.items() if v.kind != inspect.Parameter.VAR_KEYWORD and k not in params})
        if not any(v.kind == inspect.Parameter.VAR_KEYWORD for v in sig.values()):
            break
    return params


def accepted_args(name: str) -> list[str]:
    """The config.model keys model `name` accepts (its constructor's arguments, minus those the trainer provides)."""
    return [p for p in _init_params(get_class(name)) if p not in ("self", *_PROVIDED)]


def check_kwargs(name: str, kwargs: Mapping[str, Any]) -> None:
    """Fails (naming the key) on config.model keys the model does not accept, or required ones missing."""
    params = _init_params(get_class(name))
    accepted = [p for p in params if p not in ("self", *_PROVIDED)]
    for key in kwargs:
        if key not in accepted:
            raise ValueError(f"config.model.{key} is not an argument of model {name!r}; it accepts: {accepted}")
    for p in accepted:
        if params[p].default is inspect.Parameter.empty and p not in kwargs:
            raise ValueError(f"config.model.{p} is required by model {name!r}")


def make(
    config: Mapping[str, Any],
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    rngs: nnx.Rngs,
    label_counts: Callable[[], Any] | None = None,
) -> nnx.Module:
    """Builds `config.name` with the other keys of `config` as keyword arguments (and `label_counts` when the
    model's constructor takes it)."""
    kwargs = {k: v for k, v in dict(config).items() if k != "name"}
    check_kwargs(config["name"], kwargs)
    check_policy(kwargs.get("remat", "none"))
    cls = get_class(config["name"])
    if "label_counts" in _init_params(cls):
        kwargs["label_counts"] = label_counts
    return cls(input_shape=tuple(input_shape), num_classes=num_classes, rngs=rngs, **kwargs)
