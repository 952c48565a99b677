"""Structured pruning of MLP hidden units: remove whole units by an importance score and return a *smaller dense
model* (a new `config.model` with narrower `hidden` + sliced parameters), which runs faster on any backend, unlike
unstructured sparsity (`jaxdl.compress.prune`), whose zeros a dense matmul still multiplies.

Importance of hidden unit j of layer i (Molchanov et al.'s magnitude proxy): ||W_i[:, j]||₂ · ||W_{i+1}[j, :]||₂ —
the product of the norms of the weights into and out of the unit (the bias is not counted: a unit with no outgoing
weight contributes nothing whatever its bias). A unit whose outgoing weights are all zero scores 0, and removing
it leaves the network's function unchanged; `prune_mlp` keeps the `keep` highest-scoring units of each layer.

Supported: the `mlp` family without residual connections (`residual=False`: a residual adds a layer's input to
its output, so both would have to keep the same units). Parameters are the pure dicts of `nnx.State.to_pure_dict`:
{"blocks": {i: {"linear": {"kernel" [in, out], "bias" [out]}}}, "head": {"kernel", "bias"}}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _kernels(params: Mapping) -> list[np.ndarray]:
    blocks = params["blocks"]
    return [np.asarray(blocks[i]["linear"]["kernel"]) for i in sorted(blocks)] + [np.asarray(params["head"]["kernel"])]


def unit_importance(params: Mapping) -> list[np.ndarray]:
    """Per hidden layer, float64 `[units]`: ||incoming column||₂ · ||outgoing row||₂ of each unit."""
    ks = _kernels(params)
    return [
        np.linalg.norm(ks[i].astype(np.float64), axis=0) * np.linalg.norm(ks[i + 1].astype(np.float64), axis=1)
        for i in range(len(ks) - 1)
    ]


def prune_mlp(
    model_config: Mapping[str, Any], params: Mapping, keep: float | Sequence[int]
) -> tuple[dict[str, Any], dict, list[np.ndarray]]:
    """(new model config, new params (pure dict, same dtypes), kept unit indices per layer, ascending).

    `keep`: the fraction of each hidden layer's units to keep (at least 1 unit), or the number per layer."""
    cfg = dict(model_config)
    if cfg.get("name") != "mlp":
        raise ValueError(f"structured pruning supports config.model.name='mlp', got {cfg.get('name')!r}")
    if cfg.get("residual", False):
        raise ValueError("config.model.residual=True: residual layers must keep the same units; not supported")
    scores = unit_importance(params)
    widths = [len(s) for s in scores]
    if isinstance(keep, int | float) and not isinstance(keep, bool):
        if not 0.0 < float(keep) <= 1.0:
            raise ValueError(f"keep={keep}: a fraction must be in (0, 1]")
        counts = [max(1, round(float(keep) * w)) for w in widths]
    else:
        counts = [int(c) for c in keep]
        if len(counts) != len(widths) or not all(1 <= c <= w for c, w in zip(counts, widths, strict=True)):
            raise ValueError(f"keep={list(keep)}: need one count in [1, width] per hidden layer {widths}")
    kept = [np.sort(np.argsort(-s, kind="stable")[:c]) for s, c in zip(scores, counts, strict=True)]
    blocks = params["blocks"]
    new_blocks, prev = {}, None
    for n, i in enumerate(sorted(blocks)):
        k, b = np.asarray(blocks[i]["linear"]["kernel"]), np.asarray(blocks[i]["linear"]["bias"])
        k = k if prev is None else k[prev]
        new_blocks[i] = {"linear": {"kernel": k[:, kept[n]], "bias": b[kept[n]]}}
        prev = kept[n]
    head = {"kernel": np.asarray(params["head"]["kernel"])[prev], "bias": np.asarray(params["head"]["bias"])}
    cfg["hidden"] = tuple(counts)
    return cfg, {"blocks": new_blocks, "head": head}, kept
