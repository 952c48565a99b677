"""Checks and file handling shared by the Hugging Face converters (`hf_bert`, `hf_gpt2`).

A converter maps the model's parameters to a set of HF tensor names; loading compares that set with the
checkpoint's names (`check_names`), each tensor's shape with the model's (`check_shape`) and tied copies with their
source (`check_tied`). Every failure names the tensor; missing/unexpected names raise `CheckpointMismatch`, which
is both a KeyError and a ValueError.
"""

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file


class CheckpointMismatch(KeyError, ValueError):
    """The checkpoint's tensor names do not match the model's: a missing or an unexpected tensor."""

    def __str__(self) -> str:  # KeyError would print the message quoted as a repr
        return str(self.args[0]) if self.args else ""


def strip_prefix(tensors: Mapping[str, np.ndarray], prefix: str, tag: str) -> dict[str, np.ndarray]:
    """`tensors` with `prefix` removed from the names that have it; a name present both with and without the prefix
    is an error (the two layouts must not be mixed)."""
    out = {k.removeprefix(prefix): v for k, v in tensors.items()}
    if len(out) != len(tensors):
        both = sorted(k for k in tensors if k.startswith(prefix) and k.removeprefix(prefix) in tensors)
        raise ValueError(f"{tag}: the checkpoint holds the same tensor both with and without the {prefix!r} prefix, e.g. {both[:3]}")  # fmt: skip
    return out


def check_names(
    tag: str,
    expected: Iterable[str],
    given: Iterable[str],
    *,
    optional: tuple[str, ...] = (),
    ignore: Callable[[str], bool] = lambda name: False,
    model: str = "",
    hint: str = "",
) -> None:
    """Raises `CheckpointMismatch` naming the first few `expected` tensors missing from `given` (except names
    starting with an `optional` prefix), then the first few `given` tensors the model has no place for (except
    those `ignore` accepts). `model` describes the model in the second message, `hint` ends it."""
    expected, given = set(expected), set(given)
    missing = sorted(k for k in expected - given if not k.startswith(optional))
    if missing:
        raise CheckpointMismatch(
            f"{tag}: checkpoint lacks {len(missing)} tensor(s) the model needs, e.g. {missing[:5]}"
        )
    extra = sorted(k for k in given - expected if not ignore(k))
    if extra:
        raise CheckpointMismatch(
            f"{tag}: checkpoint has {len(extra)} tensor(s) this model{model} has no place for, e.g. {extra[:5]}{hint}"
        )


def check_shape(tag: str, name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    """ValueError naming tensor `name` when `array` is not of `shape` (the HF shape the model needs)."""
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"{tag}: tensor {name!r} has shape {tuple(array.shape)}, the model needs {tuple(shape)}")


def check_tied(tag: str, given: Mapping[str, np.ndarray], tied: Mapping[str, str]) -> None:
    """ValueError when a tied copy (key of `tied`) present in `given` differs from its source (value)."""
    for copy, source in tied.items():
        if copy in given and source in given and not np.array_equal(given[copy], given[source]):
            raise ValueError(f"{tag}: {copy!r} differs from {source!r}; the model ties them (untied not supported)")


def read_model_dir(path: str | Path, tag: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(config.json as a dict, model.safetensors as numpy arrays) of the HF model directory `path`."""
    path = Path(path)
    for f in ("config.json", "model.safetensors"):
        if not (path / f).is_file():
            raise FileNotFoundError(f"{tag}: {path / f} not found (need a HF model directory)")
    return json.loads((path / "config.json").read_text()), load_file(str(path / "model.safetensors"))
