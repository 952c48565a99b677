"""Attention-head pruning to a *smaller dense model*: the transformer with `heads` reduced to the kept count and each
head's width unchanged (`config.model.head_dim` = the original dim // heads), its q/k/v/o weights sliced to the kept
heads. The heads are chosen per layer by `jaxdl.compress.structured.mask_heads` (importance ||W_v[h]|| · ||W_o[h]||),
so the pruned model computes exactly what the masked original computes (a zeroed head adds nothing), with fewer
FLOPs in the q/k/v/o projections and the attention itself; the MLPs are untouched.

Every layer keeps the same number of heads: the blocks are stacked on a `layers` axis and scanned, so they must share
one shape. Parameters are pure dicts (`nnx.State.to_pure_dict`) of a model built on `jaxdl.models.transformer` (ViT,
the transformer classifier): under ["blocks"]["attn"] wq/wk/wv [depth, embed, heads, head_dim], wo [depth, heads,
head_dim, embed], optional bq/bk/bv [depth, heads, head_dim].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxdl.compress.structured import mask_heads

_HEAD_AXIS = {"wq": 2, "wk": 2, "wv": 2, "wo": 1, "bq": 1, "bk": 1, "bv": 1}  # the heads axis of each leaf


def prune_heads(
    model_config: Mapping[str, Any], params: Mapping, keep: float | int
) -> tuple[dict[str, Any], dict, np.ndarray]:
    """(new model config with `heads` = the kept count and `head_dim` set, new params (pure dict, same dtypes), kept
    head indices int [depth, count], ascending per layer). `keep`: a fraction of each layer's heads (at least 1) or a
    count."""
    cfg = dict(model_config)
    heads = int(cfg.get("heads", 0))
    if not heads or "dim" not in cfg:
        raise ValueError(f"head pruning needs config.model.dim and config.model.heads, got {sorted(cfg)}")
    if cfg.get("num_kv_heads", 0) not in (0, None, heads):
        raise ValueError(f"config.model.num_kv_heads={cfg['num_kv_heads']}: grouped-query attention is not supported")
    head_dim = int(cfg.get("head_dim") or cfg["dim"] // heads)
    _, mask = mask_heads(params, keep)  # [depth, heads] bool, the same count per layer
    if mask.shape[1] != heads:
        raise ValueError(f"config.model.heads={heads} but the parameters have {mask.shape[1]} heads per layer")
    idx = np.stack([np.flatnonzero(row) for row in mask])  # [depth, count]
    attn = dict(params["blocks"]["attn"])
    for name, ax in _HEAD_AXIS.items():
        if name in attn:
            w = np.asarray(attn[name])
            shape = [1] * w.ndim
            shape[0], shape[ax] = idx.shape
            attn[name] = np.take_along_axis(w, idx.reshape(shape), axis=ax)
    new = {**params, "blocks": {**params["blocks"], "attn": attn}}
    cfg["heads"], cfg["head_dim"] = idx.shape[1], head_dim
    return cfg, new, idx
