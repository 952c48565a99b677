"""Structured pruning: remove whole MLP hidden units (`prune_mlp`) or whole conv output channels (`prune_vgg`) by an
importance score and return a *smaller dense model* (a new `config.model` with narrower `hidden` / `widths` +
sliced parameters), which runs faster on any backend, unlike unstructured sparsity (`jaxdl.compress.prune`), whose
zeros a dense matmul or convolution still multiplies.

Importance of hidden unit j of layer i (Molchanov et al.'s magnitude proxy): ||W_i[:, j]||₂ · ||W_{i+1}[j, :]||₂ —
the product of the norms of the weights into and out of the unit (the bias is not counted: a unit with no outgoing
weight contributes nothing whatever its bias). A unit whose outgoing weights are all zero scores 0, and removing
it leaves the network's function unchanged; `prune_mlp` keeps the `keep` highest-scoring units of each layer.
Conv channels score the same way (`channel_importance`): ||filter j of conv i||₂ · ||every weight that reads
channel j||₂ (the next conv's input slice [kh, kw, j, :], or for the last conv the rows of the dense layer that
read channel j at every spatial position of the flattened [h, w, c] map). The score is BN-free by design: a
normalization layer between conv and ReLU would rescale channels and needs folding first, so `prune_vgg` takes
`norm="none"` only. Both pruners take `scores=` to rank by another importance instead: the first-order Taylor score
on calibration batches (`jaxdl.compress.taylor.taylor_importance`) or the filters' L1 norm (`filter_l1_importance`,
Li et al. 2017); experiments/deploy/README.md §4 ablates the three.

Supported: the `mlp` family without residual connections (`residual=False`: a residual adds a layer's input to
its output, so both would have to keep the same units), and the `vgg` family with `convs=1` (one conv per stage,
so `widths` is the width of every conv) and `norm="none"`. Parameters are the pure dicts of
`nnx.State.to_pure_dict`: mlp {"blocks": {i: {"linear": {"kernel" [in, out], "bias" [out]}}}, "head": {...}};
vgg {"convs": {i: {"kernel" [3, 3, cin, cout], "bias" [cout]}}, "fc": {"kernel" [h*w*c, hidden], "bias"},
"head": {...}}.

Attention heads (`head_importance`, `mask_heads`): a head's importance is ||W_v[h]||_F · ||W_o[h]||_F (its value
projection into the head times its output projection out of it; a head whose output projection is zero scores 0
and contributes nothing). `mask_heads` zeroes the q/k/v/o weights of the lowest-scoring heads of every layer of a
model built on `jaxdl.models.transformer` (ViT, BERT-style encoders: parameters under ["blocks"]["attn"], stacked
over layers [depth, ...]); `jaxdl.compress.heads.prune_heads` turns the same choice into a smaller dense model with
fewer heads of the original width (`config.model.head_dim`).
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
    model_config: Mapping[str, Any],
    params: Mapping,
    keep: float | Sequence[int],
    scores: Sequence[np.ndarray] | None = None,
) -> tuple[dict[str, Any], dict, list[np.ndarray]]:
    """(new model config, new params (pure dict, same dtypes), kept unit indices per layer, ascending).

    `keep`: the fraction of each hidden layer's units to keep (at least 1 unit), or the number per layer.
    `scores`: per hidden layer [units] (e.g. `jaxdl.compress.taylor.taylor_importance`); default
    `unit_importance`."""
    cfg = dict(model_config)
    if cfg.get("name") != "mlp":
        raise ValueError(f"structured pruning supports config.model.name='mlp', got {cfg.get('name')!r}")
    if cfg.get("residual", False):
        raise ValueError("config.model.residual=True: residual layers must keep the same units; not supported")
    default = unit_importance(params)
    scores = _check_scores(default if scores is None else scores, [len(s) for s in default])
    widths = [len(s) for s in scores]
    counts = _counts(keep, widths)
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


def _vgg_convs(params: Mapping) -> list[tuple[np.ndarray, np.ndarray]]:
    convs = params["convs"]
    return [(np.asarray(convs[i]["kernel"]), np.asarray(convs[i]["bias"])) for i in sorted(convs)]


def _fc_by_channel(fc: np.ndarray, channels: int) -> np.ndarray:
    """The dense kernel [h*w*c, hidden] of a flattened [h, w, c] map as [h*w, c, hidden]."""
    if fc.shape[0] % channels:
        raise ValueError(f"fc kernel rows {fc.shape[0]} are not a multiple of the last conv's {channels} channels")
    return fc.reshape(fc.shape[0] // channels, channels, fc.shape[1])


def channel_importance(params: Mapping) -> list[np.ndarray]:
    """Per conv layer, float64 `[out channels]`: ||filter||₂ · ||weights reading the channel||₂ (see module doc)."""
    convs = _vgg_convs(params)
    scores = []
    for i, (k, _) in enumerate(convs):
        k = k.astype(np.float64)
        w_in = np.sqrt(np.sum(k**2, axis=(0, 1, 2)))
        if i + 1 < len(convs):
            nxt = convs[i + 1][0].astype(np.float64)
            w_out = np.sqrt(np.sum(nxt**2, axis=(0, 1, 3)))
        else:
            fc = _fc_by_channel(np.asarray(params["fc"]["kernel"]), k.shape[-1]).astype(np.float64)
            w_out = np.sqrt(np.sum(fc**2, axis=(0, 2)))
        scores.append(w_in * w_out)
    return scores


def filter_l1_importance(params: Mapping) -> list[np.ndarray]:
    """Per conv layer of a `vgg`, float64 [out channels]: the L1 norm of each filter, Σ|kernel[..., j]| (Li et al.
    2017, "Pruning filters for efficient ConvNets"; it ignores the weights that read the channel)."""
    return [np.sum(np.abs(k.astype(np.float64)), axis=(0, 1, 2)) for k, _ in _vgg_convs(params)]


def _check_scores(scores: Sequence, widths: list[int]) -> list[np.ndarray]:
    scores = [np.asarray(s, np.float64) for s in scores]
    if [s.shape for s in scores] != [(w,) for w in widths]:
        raise ValueError(f"scores shapes {[s.shape for s in scores]} do not match the layer widths {widths}")
    if not all(np.all(np.isfinite(s)) for s in scores):
        raise ValueError("scores hold a NaN or infinity")
    return scores


def _counts(keep, widths: list[int]) -> list[int]:
    if isinstance(keep, int | float) and not isinstance(keep, bool):
        if not 0.0 < float(keep) <= 1.0:
            raise ValueError(f"keep={keep}: a fraction must be in (0, 1]")
        return [max(1, round(float(keep) * w)) for w in widths]
    counts = [int(c) for c in keep]
    if len(counts) != len(widths) or not all(1 <= c <= w for c, w in zip(counts, widths, strict=True)):
        raise ValueError(f"keep={list(keep)}: need one count in [1, width] per layer {widths}")
    return counts


def prune_vgg(
    model_config: Mapping[str, Any],
    params: Mapping,
    keep: float | Sequence[int],
    scores: Sequence[np.ndarray] | None = None,
) -> tuple[dict[str, Any], dict, list[np.ndarray]]:
    """(new model config with narrower `widths`, new params (pure dict, same dtypes), kept channel indices per conv,
    ascending) of a `vgg` model with `convs=1` and `norm="none"`.

    `keep`: the fraction of each conv's output channels to keep (at least 1), or the number per conv layer.
    `scores`: per conv [out channels], higher = keep (e.g. `jaxdl.compress.taylor.taylor_importance`,
    `filter_l1_importance`); default `channel_importance`."""
    cfg = dict(model_config)
    if cfg.get("name") != "vgg":
        raise ValueError(f"conv-channel pruning supports config.model.name='vgg', got {cfg.get('name')!r}")
    if cfg.get("convs", 2) != 1:
        raise ValueError(f"config.model.convs={cfg.get('convs', 2)}: prune_vgg needs convs=1 (one width per conv)")
    if cfg.get("norm", "batch") != "none":
        raise ValueError(f"config.model.norm={cfg.get('norm', 'batch')!r}: prune_vgg needs norm='none' (fold first)")
    convs = _vgg_convs(params)
    widths = [k.shape[-1] for k, _ in convs]
    scores = _check_scores(channel_importance(params) if scores is None else scores, widths)
    counts = _counts(keep, [len(sc) for sc in scores])
    kept = [np.sort(np.argsort(-sc, kind="stable")[:c]) for sc, c in zip(scores, counts, strict=True)]
    new_convs, prev = {}, None
    for n, (i, (k, b)) in enumerate(zip(sorted(params["convs"]), convs, strict=True)):
        k = k if prev is None else k[:, :, prev, :]
        new_convs[i] = {"kernel": k[..., kept[n]], "bias": b[kept[n]]}
        prev = kept[n]
    fc = np.asarray(params["fc"]["kernel"])
    fc_new = _fc_by_channel(fc, convs[-1][0].shape[-1])[:, prev, :].reshape(-1, fc.shape[1])
    new = {"convs": new_convs, "fc": {"kernel": fc_new, "bias": np.asarray(params["fc"]["bias"])}}
    new["head"] = {k: np.asarray(v) for k, v in params["head"].items()}
    cfg["widths"] = tuple(counts)
    return cfg, new, kept


def _attn(params: Mapping) -> Mapping:
    try:
        attn = params["blocks"]["attn"]
        shapes = {k: np.shape(attn[k]) for k in ("wq", "wk", "wv", "wo")}
    except (KeyError, TypeError) as e:
        raise ValueError(f"head pruning needs params['blocks']['attn'] with wq/wk/wv/wo (a transformer): {e}") from None
    if len(shapes["wo"]) != 4 or shapes["wk"][-2] != shapes["wq"][-2]:
        raise ValueError(
            f"head pruning needs layer-stacked weights with as many k/v heads as q heads (no grouped-query "
            f"attention): wq {shapes['wq']}, wk {shapes['wk']}, wo {shapes['wo']}"
        )
    return attn


def head_importance(params: Mapping) -> np.ndarray:
    """float64 [depth, heads]: ||W_v[l, :, h, :]||_F · ||W_o[l, h, :, :]||_F (wv [depth, embed, heads, head_dim],
    wo [depth, heads, head_dim, embed])."""
    attn = _attn(params)
    wv, wo = np.asarray(attn["wv"], np.float64), np.asarray(attn["wo"], np.float64)
    return np.sqrt(np.sum(wv**2, axis=(1, 3))) * np.sqrt(np.sum(wo**2, axis=(2, 3)))


def mask_heads(params: Mapping, keep: float | int) -> tuple[dict, np.ndarray]:
    """(params with the q/k/v/o weights and q/k/v biases of the pruned heads set to 0, kept mask bool
    [depth, heads]): every layer keeps its `keep` (a fraction, or a count) highest-scoring heads."""
    scores = head_importance(params)
    heads = scores.shape[1]
    count = _counts(keep, [heads])[0] if isinstance(keep, float) else _counts([int(keep)], [heads])[0]
    kept = np.zeros(scores.shape, bool)
    for layer, sc in enumerate(scores):
        kept[layer, np.argsort(-sc, kind="stable")[:count]] = True
    attn = dict(_attn(params))
    axis = {"wq": 2, "wk": 2, "wv": 2, "wo": 1, "bq": 1, "bk": 1, "bv": 1}  # the heads axis of each leaf
    for name, ax in axis.items():
        if name in attn:
            w = np.array(attn[name])
            shape = [1] * w.ndim
            shape[0], shape[ax] = kept.shape
            attn[name] = np.where(kept.reshape(shape), w, np.zeros_like(w))
    blocks = {**params["blocks"], "attn": attn}
    return {**params, "blocks": blocks}, kept
