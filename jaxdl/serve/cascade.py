"""Two-model cascades: a cheap model answers an example when its max-softmax confidence clears a threshold τ, and
the example is deferred to an expensive model otherwise (Viola & Jones 2001's cascade; the confidence-threshold form
of e.g. Wang et al. 2018 "IDK cascades"). It lives in `jaxdl.serve` rather than `jaxdl.compress` because it changes
no weights: it is an inference-time routing policy over two already-trained (or exported) models, the same
callables the server runs (`Artifact` or any `x -> logits`).

The rule: cheap answers iff confidence > τ, with τ in [0, 1]. The strict inequality makes both ends of the sweep
exact: max-softmax is ≥ 1/K > 0, so τ = 0 is always the cheap model, and it is ≤ 1, so τ = 1 is always the
expensive one (with "≥" a float32 softmax that saturates to exactly 1.0 would still be answered by the cheap model
at τ = 1). τ outside [0, 1] is rejected rather than silently meaning "always" or "never".

* `confidence(logits)`: max softmax (float64, computed stably from the logits).
* `route(cheap_logits, expensive_logits, tau)`: the cascade's logits and the deferred mask from both models'
  logits on the same examples (what a sweep over τ needs: every model runs once).
* `Cascade(cheap, expensive, tau)`: the serving form, which runs the expensive model only on the deferred rows.
* `flops_per_example(fn, example_batch)`: XLA's FLOP count of `fn` from `jax.jit(fn).lower(x).cost_analysis()`,
  divided by the batch size.
* `sweep(...)`: accuracy, deferred fraction and average cost (cost_cheap + deferred · cost_expensive, since every
  example pays for the cheap model) for each τ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _check_tau(tau: float) -> float:
    tau = float(tau)
    if not 0.0 <= tau <= 1.0:  # also rejects NaN
        raise ValueError(f"tau={tau}: the confidence threshold must be in [0, 1] (max-softmax is in [1/K, 1])")
    return tau


def _check_logits(logits, name: str) -> np.ndarray:
    z = np.asarray(logits)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"{name}: expected logits [batch, classes>=2], got shape {z.shape}")
    return z


def confidence(logits) -> np.ndarray:
    """Max softmax probability of each row of `[batch, classes]` logits: 1 / Σ_j exp(z_j - max z)."""
    z = _check_logits(logits, "logits").astype(np.float64)
    return 1.0 / np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)


def route(cheap_logits, expensive_logits, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """(cascade logits, deferred mask): row i is the cheap model's when confidence(cheap_i) > tau, else the
    expensive model's. Both inputs are the two models' logits on the same examples."""
    tau = _check_tau(tau)
    c = _check_logits(cheap_logits, "cheap_logits")
    e = _check_logits(expensive_logits, "expensive_logits")
    if c.shape != e.shape:
        raise ValueError(f"cheap logits {c.shape} and expensive logits {e.shape} must have the same shape")
    deferred = ~(confidence(c) > tau)
    return np.where(deferred[:, None], e, c), deferred


class Cascade:
    """`cascade(x)` → logits `[batch, classes]`: the cheap model on every row, the expensive one only on the rows
    whose cheap confidence is ≤ τ (so the expensive model's cost is paid only for them). `last_deferred` holds the
    mask of the latest call. Models are callables `x -> logits` taking any batch size ≥ 1 (e.g. an `Artifact`).

    A jitted expensive model compiles once per distinct sub-batch size; `pad_pow2=True` pads the deferred rows (with
    copies of the first one) to the next power of two, so at most ceil(log2(batch)) + 1 shapes ever compile."""

    def __init__(self, cheap: Callable, expensive: Callable, tau: float, *, pad_pow2: bool = False):
        self.cheap, self.expensive, self.tau = cheap, expensive, _check_tau(tau)
        self.pad_pow2 = pad_pow2
        self.last_deferred: np.ndarray | None = None

    def __call__(self, x) -> np.ndarray:
        c = _check_logits(self.cheap(x), "cheap model output")
        deferred = ~(confidence(c) > self.tau)
        out = np.array(c, copy=True)
        if deferred.any():
            idx = np.flatnonzero(deferred)
            rows = idx
            if self.pad_pow2:
                size = 1 << int(len(idx) - 1).bit_length()
                rows = np.concatenate([idx, np.full(size - len(idx), idx[0])])
            e = _check_logits(self.expensive(np.asarray(x)[rows]), "expensive model output")[: len(idx)]
            if e.shape[1] != c.shape[1]:
                raise ValueError(f"the models disagree on the number of classes: {c.shape[1]} vs {e.shape[1]}")
            out = out.astype(np.result_type(c.dtype, e.dtype))
            out[idx] = e
        self.last_deferred = deferred
        return out


def flops_per_example(fn: Callable, example_batch) -> float:
    """FLOPs per example of `fn` (a jax-traceable `x -> logits`) as XLA's cost analysis counts them for the
    compiled batch `example_batch`, divided by its batch size."""
    import jax

    x = np.asarray(example_batch)
    cost = jax.jit(fn).lower(x).cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax returned one dict per computation
        cost = cost[0]
    if not cost or "flops" not in cost:
        raise ValueError(f"XLA's cost analysis gave no FLOP count for this function on this backend: {cost}")
    return float(cost["flops"]) / len(x)


def sweep(
    cheap_logits,
    expensive_logits,
    labels,
    taus: Sequence[float],
    *,
    cost_cheap: float,
    cost_expensive: float,
) -> list[dict]:
    """For each τ: accuracy of the cascade, the fraction deferred to the expensive model, and the average cost per
    example, cost_cheap + deferred_fraction · cost_expensive (in the units of the costs: FLOPs or seconds)."""
    y = np.asarray(labels)
    if len(y) != len(np.asarray(cheap_logits)):
        raise ValueError(f"{len(y)} labels for {len(np.asarray(cheap_logits))} examples")
    if cost_cheap < 0 or cost_expensive < 0:
        raise ValueError(f"costs must be non-negative, got {cost_cheap}, {cost_expensive}")
    rows = []
    for tau in taus:
        logits, deferred = route(cheap_logits, expensive_logits, tau)
        frac = float(deferred.mean())
        rows.append(
            {
                "tau": float(tau),
                "accuracy": float(np.mean(logits.argmax(1) == y)),
                "deferred": frac,
                "cost": cost_cheap + frac * cost_expensive,
            }
        )
    return rows
