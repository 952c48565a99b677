"""Launch-configuration tables of the Triton kernels (`<op>/autotune.json`): format, loading, lookup, writing.

One implementation for every op. A table is `{"buckets": {field: [bounds]}, "defaults": {"gpu": .., "interpret":
..}, "entries": [..]}`; an entry holds match fields, the op's config sections, `source` and `ref`. The op turns the
chosen entry into its config dataclass (`kernels/attention/launch_config.py`, `kernels/int8_matmul/launch_config.py`).
Also here: device and dtype names, and compiling a kernel for a GPU architecture without a GPU (to check entries).
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from kernels.triton_call import resolve_backend

DEVICE_CLASSES = ("gpu", "interpret")
_TRITON_TYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "int8": "i8", "uint8": "u8", "int32": "i32"}


# ---------------------------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------------------------


def short_device_name(device_kind: str) -> str:
    """`"NVIDIA H100 80GB HBM3"` -> `"H100"` (the GPU model), or the device kind unchanged if no model is found."""
    match = re.search(r"\b(GH200|GB200|[ABHLV]\d{2,3}[A-Z]?|L40S?|RTX ?\d{4})\b", device_kind.upper())
    return match.group(1).replace(" ", "") if match else device_kind


def device_key(backend: str = "auto") -> str:
    """The tables' device name: `"interpret"` for Triton's interpreter, else the GPU model (`"H100"`, ...)."""
    if resolve_backend(backend) == "interpret":
        return "interpret"
    return short_device_name(jax.devices()[0].device_kind)


def device_class(device: str) -> str:
    """`"interpret"` for the interpreter, `"gpu"` for any GPU model."""
    return "interpret" if device == "interpret" else "gpu"


def dtype_name(dtype: Any) -> str:
    """The tables' dtype name: numpy's (`"bfloat16"`, `"float32"`, ...)."""
    return jnp.dtype(dtype).name


def triton_type(dtype: Any) -> str:
    """Triton's signature type of an element dtype (`bfloat16` -> `"bf16"`); ValueError for an unsupported one."""
    name = dtype_name(dtype)
    if name not in _TRITON_TYPES:
        raise ValueError(f"dtype {name}: no Triton type known here (expected one of {sorted(_TRITON_TYPES)})")
    return _TRITON_TYPES[name]


def bucket(value: int, bounds: Iterable[int]) -> str:
    """A bucketed field's class: `"<=B"` for the smallest bound B >= value, else `">B_last"`."""
    bounds = list(bounds)
    for bound in bounds:
        if value <= bound:
            return f"<={bound}"
    return f">{bounds[-1]}"


# ---------------------------------------------------------------------------------------------------------------
# Loading and lookup
# ---------------------------------------------------------------------------------------------------------------


def load_table(path: str | pathlib.Path) -> dict[str, Any]:
    """The parsed table at `path`; ValueError naming the file and the field when its layout is wrong."""
    with open(path) as f:
        table = json.load(f)
    if not isinstance(table, dict) or not isinstance(table.get("entries"), list):
        raise ValueError(f"{path}: expected an object with an 'entries' list")
    buckets = table.get("buckets", {})
    if not isinstance(buckets, dict) or not all(
        isinstance(b, list) and b and all(isinstance(x, int) for x in b) and b == sorted(b) for b in buckets.values()
    ):
        raise ValueError(f"{path}: 'buckets' must map field names to non-empty ascending lists of ints")
    defaults = table.get("defaults", {})
    if not isinstance(defaults, dict) or set(defaults) - set(DEVICE_CLASSES):
        raise ValueError(f"{path}: 'defaults' may only hold {list(DEVICE_CLASSES)}, got {sorted(defaults)}")
    for i, entry in enumerate(table["entries"]):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: entries[{i}] is not an object")
    return table


@functools.cache
def cached_table(path: str) -> dict[str, Any]:
    """`load_table(path)`, read once per process (the checked-in tables)."""
    return load_table(path)


def field_matches(value: Any, want: Any) -> bool:
    """Whether a call's `value` matches an entry's field `want` (a value, a list of values, or "*"/None)."""
    if want is None or want == "*":
        return True
    if isinstance(want, list):
        return value in want
    return value == want


def best_entry(entries: list[dict[str, Any]], device: str, call: Mapping[str, Any]) -> tuple[int, dict] | None:
    """(index, entry) of the most specific entry matching `device` and every field of `call`, or None.

    An entry's `device` may name the device, its class (`"gpu"`, `"interpret"`) or `"*"`; other fields match via
    `field_matches`. Score: a named device 10, each other field the entry gives 1; ties go to the earlier entry.
    """
    best, best_score = None, -1
    for i, entry in enumerate(entries):
        want = entry.get("device", "*")
        names = want if isinstance(want, list) else [want]
        if device in names:
            score = 10
        elif device_class(device) in names or "*" in names:
            score = 0
        else:
            continue
        if not all(field_matches(call[k], entry.get(k, "*")) for k in call):
            continue
        score += sum(entry.get(k, "*") != "*" for k in call)
        if score > best_score:
            best, best_score = (i, entry), score
    return best


def match_fields(table: Mapping[str, Any], call: Mapping[str, Any]) -> dict[str, Any]:
    """The call's values as the table matches them: fields named in `table["buckets"]` become their bucket."""
    buckets = table.get("buckets", {})
    return {k: bucket(v, buckets[k]) if k in buckets else v for k, v in call.items()}


def lookup(
    table: Mapping[str, Any], device: str, call: Mapping[str, Any], name: str = "autotune.json"
) -> tuple[dict[str, Any], str]:
    """(the entry or default for `call` on `device`, where it is: `"<name> entries[3]"` / `"<name> defaults.gpu"`).

    `call` holds raw values (`{"head_dim": 128, "seq": 4096, ...}`); bucketed fields are classed by
    :func:`match_fields`. The most specific entry wins (:func:`best_entry`); with none, `defaults[device class]`.
    """
    fields = match_fields(table, call)
    found = best_entry(table["entries"], device, fields)
    if found is not None:
        return found[1], f"{name} entries[{found[0]}]"
    cls = device_class(device)
    default = table.get("defaults", {}).get(cls)
    if default is None:
        raise ValueError(f"{name}: no entry matches {device} {fields} and there is no defaults.{cls}")
    return default, f"{name} defaults.{cls}"


# ---------------------------------------------------------------------------------------------------------------
# Writing (tools that measure entries)
# ---------------------------------------------------------------------------------------------------------------


def format_table(table: Mapping[str, Any], width: int = 132) -> str:
    """JSON in the checked-in layout: lists of scalars, and objects without nested objects that fit in `width`
    columns, on one line (a kernel's config, a measurement); everything else one key per line, 2-space indent."""

    def flat(x: Any) -> str:
        return json.dumps(x, ensure_ascii=False)

    def fmt(x: Any, indent: int, column: int) -> str:  # indent: of the enclosing line; column: where x starts
        if isinstance(x, list) and all(not isinstance(v, dict | list) for v in x):
            return flat(x)
        if isinstance(x, dict) and all(not isinstance(v, dict) for v in x.values()) and column + len(flat(x)) <= width:
            return flat(x)
        pad = " " * (indent + 2)
        if isinstance(x, list):
            return "[\n" + ",\n".join(pad + fmt(v, indent + 2, indent + 2) for v in x) + "\n" + " " * indent + "]"
        if isinstance(x, dict):
            items = (f"{pad}{flat(k)}: {fmt(v, indent + 2, indent + 4 + len(flat(k)))}" for k, v in x.items())
            return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
        return flat(x)

    return fmt(dict(table), 0, 0) + "\n"


def merge_measured(
    table: Mapping[str, Any], new_entries: list[dict[str, Any]], class_fields: Iterable[str]
) -> dict[str, Any]:
    """The table with `new_entries` appended, replacing earlier measured entries (`source` "measured...") of the
    same class (equal `class_fields`)."""
    fields = tuple(class_fields)
    same = lambda a, b: all(a.get(k) == b.get(k) for k in fields)
    kept = [
        e
        for e in table["entries"]
        if not (str(e.get("source", "")).startswith("measured") and any(same(e, n) for n in new_entries))
    ]
    return {**table, "entries": kept + list(new_entries)}


# ---------------------------------------------------------------------------------------------------------------
# Compiling an entry for a GPU architecture without a GPU
# ---------------------------------------------------------------------------------------------------------------


def nvidia_tools_dir() -> pathlib.Path:
    """Where Triton's NVIDIA backend keeps its bundled `ptxas` and `cuobjdump`."""
    import triton

    return pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin"


def offline_compile_unavailable(tools: Iterable[str] = ("ptxas",)) -> str | None:
    """Why :func:`compile_for_gpu` cannot run here (None when it can): Triton's NVIDIA backend does not import, or
    one of its bundled `tools` is missing (and no `TRITON_<TOOL>_PATH` names one). Nothing else is excused."""
    try:
        import triton.backends.nvidia.compiler  # noqa: F401
    except ImportError as e:
        return f"Triton's NVIDIA backend cannot be imported: {e}"
    bin_dir = nvidia_tools_dir()
    missing = [t for t in tools if not (bin_dir / t).is_file() and not os.environ.get(f"TRITON_{t.upper()}_PATH")]
    if missing:
        return f"Triton's NVIDIA backend has no {', '.join(missing)} in {bin_dir}"
    return None


def compile_for_gpu(
    kernel: Any,
    arg_types: Mapping[str, str],
    constexprs: Mapping[str, Any],
    *,
    num_warps: int,
    num_stages: int,
    arch: int = 90,
    divisible: Iterable[str] = (),
) -> Any:
    """Compile `kernel` (a `triton.jit` function) for NVIDIA sm_`arch` without a GPU; Triton's `CompiledKernel`.

    `arg_types`: Triton type of every non-constexpr parameter (`"*bf16"`, `"i32"`, `"fp32"`); `constexprs`: the
    constexpr values; `divisible`: parameters specialized as 16-divisible, as a launch on aligned buffers and shapes
    is (pointers from JAX are). FMA contraction is on, as for launches. `asm` holds TTGIR, PTX and cubin,
    `metadata.shared` the shared memory in bytes.
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = list(kernel.arg_names)
    unknown = (set(arg_types) | set(constexprs)) - set(names)
    missing = set(names) - set(arg_types) - set(constexprs)
    if unknown or missing:
        raise ValueError(f"{kernel.__name__}: unknown parameters {sorted(unknown)}, untyped {sorted(missing)}")
    signature = {n: "constexpr" if n in constexprs else arg_types[n] for n in names}
    divisible = set(divisible)
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names) if n in divisible}
    source = ASTSource(kernel, signature, constexprs=dict(constexprs), attrs=attrs)
    options = dict(num_warps=num_warps, num_stages=num_stages, enable_fp_fusion=True)
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
