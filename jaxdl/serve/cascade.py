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

Multi-exit networks (`jaxdl.models.vision.multi_exit`) are the same rule over K heads of one network: an example
leaves at the first exit whose confidence is > τ, else at the last (with K = 2 this is exactly `route`).

* `route_exits(exit_logits, tau)`: (logits, exit index per row) from every exit's logits on the same examples;
* `EarlyExit(stages, tau)`: the serving form, running stage k (block k + head k) only on the rows still in;
* `exit_sweep(...)`: accuracy, the fraction leaving at each exit and the average cost, Σ_k frac_k · cost_k with
  cost_k the cost of answering at exit k (every block and head up to k).
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


def route_exits(exit_logits: Sequence, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """(logits [batch, classes], exit index int [batch]): row i takes the first exit k whose confidence is > tau,
    the last exit when none is. `exit_logits`: K ≥ 1 arrays [batch, classes], shallow to deep."""
    tau = _check_tau(tau)
    z = [_check_logits(x, f"exit_logits[{k}]") for k, x in enumerate(exit_logits)]
    if not z:
        raise ValueError("exit_logits is empty: need the logits of at least one exit")
    if any(x.shape != z[0].shape for x in z):
        raise ValueError(f"every exit needs logits of one shape, got {[x.shape for x in z]}")
    confident = np.stack([confidence(x) > tau for x in z[:-1]] + [np.ones(len(z[0]), bool)])  # [K, batch]
    index = np.argmax(confident, axis=0)  # the first True
    return np.stack(z)[index, np.arange(len(index))], index


class EarlyExit:
    """`early(x)` → logits `[batch, classes]` of a multi-exit network run stage by stage: `stages[k](h)` →
    (h_k, logits_k) is block k + head k (e.g. `lambda h: model.stage(k, h)`, jitted); after each stage the rows
    whose confidence is > τ leave, and only the others go on (the last stage answers every row still in).
    `last_exit` holds the exit index of each row of the latest call. `pad_pow2` as in `Cascade`."""

    def __init__(self, stages: Sequence[Callable], tau: float, *, pad_pow2: bool = False):
        if not stages:
            raise ValueError("EarlyExit needs at least one stage")
        self.stages, self.tau, self.pad_pow2 = list(stages), _check_tau(tau), pad_pow2
        self.last_exit: np.ndarray | None = None

    def __call__(self, x) -> np.ndarray:
        h = np.asarray(x)
        rows = np.arange(len(h))  # original index of each row of h
        out, exit_of = None, np.full(len(h), -1)
        for k, stage in enumerate(self.stages):
            n = len(rows)
            if self.pad_pow2 and n:
                h = np.concatenate([h, np.repeat(h[:1], (1 << int(n - 1).bit_length()) - n, axis=0)])
            h, logits = stage(h)
            h, logits = np.asarray(h)[:n], _check_logits(logits, f"stage {k} logits")[:n]
            if out is None:
                out = np.zeros((len(exit_of), logits.shape[1]), logits.dtype)
            leave = np.ones(n, bool) if k == len(self.stages) - 1 else confidence(logits) > self.tau
            out[rows[leave]], exit_of[rows[leave]] = logits[leave], k
            rows, h = rows[~leave], h[~leave]
            if not len(rows):
                break
        self.last_exit = exit_of
        return out


def exit_sweep(exit_logits: Sequence, labels, taus: Sequence[float], *, costs: Sequence[float]) -> list[dict]:
    """For each τ: accuracy of early exit, the fraction of examples leaving at each exit, and the average cost
    Σ_k fraction_k · costs[k] (costs[k]: answering at exit k, every block and head up to k, in FLOPs or seconds)."""
    y = np.asarray(labels)
    if len(costs) != len(exit_logits):
        raise ValueError(f"{len(costs)} costs for {len(exit_logits)} exits")
    if len(y) != len(np.asarray(exit_logits[0])):
        raise ValueError(f"{len(y)} labels for {len(np.asarray(exit_logits[0]))} examples")
    rows = []
    for tau in taus:
        logits, index = route_exits(exit_logits, tau)
        frac = np.bincount(index, minlength=len(costs)) / len(index)
        rows.append(
            {
                "tau": float(tau),
                "accuracy": float(np.mean(logits.argmax(1) == y)),
                "exit_fractions": frac.tolist(),
                "cost": float(frac @ np.asarray(costs, np.float64)),
            }
        )
    return rows
