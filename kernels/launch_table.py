"""Launch-configuration tables shared by the Triton kernels (`<op>/autotune.json`): device names, loading, matching.

A table is `{"entries": [{<match fields>..., <config>...}, ...]}`; a match field holds a value, a list of values,
or "*"/absent (anything). Each op decides which fields it matches on and how specific entries rank.
"""

import json
import pathlib
import re
from typing import Any

import jax

from kernels.triton_call import resolve_backend


def short_device_name(device_kind: str) -> str:
    """`"NVIDIA H100 80GB HBM3"` -> `"H100"` (the GPU model), or the device kind unchanged if no model is found."""
    match = re.search(r"\b(GH200|GB200|[ABHLV]\d{2,3}[A-Z]?|L40S?|RTX ?\d{4})\b", device_kind.upper())
    return match.group(1).replace(" ", "") if match else device_kind


def device_key(backend: str = "auto") -> str:
    """The tables' device name: `"interpret"` for Triton's interpreter, else the GPU model (`"H100"`, ...)."""
    if resolve_backend(backend) == "interpret":
        return "interpret"
    return short_device_name(jax.devices()[0].device_kind)


def load_table(path: str | pathlib.Path) -> dict[str, Any]:
    """The parsed table at `path`; ValueError naming the file if it is not `{"entries": [...]}`."""
    with open(path) as f:
        table = json.load(f)
    if not isinstance(table, dict) or not isinstance(table.get("entries"), list):
        raise ValueError(f"{path}: expected an object with an 'entries' list")
    return table


def field_matches(value: Any, want: Any) -> bool:
    """Whether a call's `value` matches an entry's field `want` (a value, a list of values, or "*"/None)."""
    if want is None or want == "*":
        return True
    if isinstance(want, list):
        return value in want
    return value == want


def best_entry(entries: list[dict[str, Any]], device: str, call: dict[str, Any]) -> tuple[int, dict] | None:
    """(index, entry) of the most specific entry matching `device` and every field of `call`, or None.

    An entry's `device` may name the device, its class (`"gpu"`, `"interpret"`) or `"*"`; other fields match via
    `field_matches`. Score: a named device 10, each other field the entry gives 1; ties go to the earlier entry.
    """
    device_class = "interpret" if device == "interpret" else "gpu"
    best, best_score = None, -1
    for i, entry in enumerate(entries):
        want = entry.get("device", "*")
        names = want if isinstance(want, list) else [want]
        if device in names:
            score = 10
        elif device_class in names or "*" in names:
            score = 0
        else:
            continue
        if not all(field_matches(call[k], entry.get(k, "*")) for k in call):
            continue
        score += sum(entry.get(k, "*") != "*" for k in call)
        if score > best_score:
            best, best_score = (i, entry), score
    return best
