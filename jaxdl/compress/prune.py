"""Unstructured magnitude pruning: one-shot and gradual (Zhu & Gupta 2017), global or per layer, as an optax
transformation that keeps a mask in its state and holds pruned weights at exactly zero through every step.

    tx = optax.chain(optax.adam(1e-3), magnitude_prune(cubic_schedule(0.9, begin_step=100, end_step=1000,
                                                                      update_every=100), scope="global"))
    params = optax.apply_updates(params, *tx.update(grads, opt_state, params))   # params are required

`magnitude_prune` goes *after* the optimizer in `optax.chain`: it sees the optimizer's update `u` and the current
params `p`, and at a mask-update step ranks the weights by |p + u| (the weights the update would produce; already
pruned ones rank as 0, so a pruned weight stays pruned while the sparsity grows) and keeps the largest. Its output
update is `u` where the mask keeps a weight and `-p` where it prunes it, so `p + update` is exactly 0.0 there (x +
(-x) == 0 in IEEE arithmetic), whatever the optimizer's moments say. Which leaves are prunable is decided by
`prunable` (default: arrays with ndim >= 2, i.e. dense/conv kernels and embeddings, not biases or norm scales); the
rest pass through untouched and hold a scalar `True` in the mask tree (not `optax.masked`'s `MaskedNode`: plain
arrays keep the optimizer state a tree of arrays that the trainer's sharding rules and orbax checkpoints handle).

Scopes: `"layer"` prunes round(s * size) weights of every prunable leaf; `"global"` ranks all prunable weights
together and prunes round(s * total) of them (layers with small weights lose more). Counts are exact: ties are
broken by position (stable argsort), never by a threshold that could prune more or fewer.

The Zhu & Gupta schedule (`cubic_schedule`): s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n Δt))^3 for
t = t0, t0 + Δt, ..., t0 + n Δt = end_step, held constant between mask updates, s_i before t0 and s_f after.

`prune_params` is the one-shot form without an optimizer; `sparsity_report` counts zeros per layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

Schedule = Callable[[jax.Array], jax.Array]
SCOPES = ("global", "layer")


def default_prunable(params: Any) -> Any:
    """The boolean pytree of leaves to prune: floating arrays with ndim >= 2 (kernels, embeddings)."""
    return jax.tree.map(lambda x: jnp.ndim(x) >= 2 and jnp.issubdtype(jnp.result_type(x), jnp.floating), params)


def cubic_schedule(
    final_sparsity: float,
    *,
    begin_step: int,
    end_step: int,
    initial_sparsity: float = 0.0,
    update_every: int = 1,
) -> Schedule:
    """Zhu & Gupta's gradual pruning schedule: step (int32 scalar, the number of updates so far) -> sparsity.

    s(t) = s_f + (s_i - s_f) (1 - (t_q - t0) / (t_end - t0))^3 with t_q = t0 + floor((t - t0) / Δt) Δt clipped to
    [t0, t_end]; s_i for t < t0. `end_step - begin_step` must be a multiple of `update_every` (Δt) so that the last
    mask update lands on s_f."""
    if not 0.0 <= initial_sparsity <= final_sparsity < 1.0:
        raise ValueError(f"need 0 <= initial_sparsity={initial_sparsity} <= final_sparsity={final_sparsity} < 1")
    if update_every < 1 or end_step < begin_step or (end_step - begin_step) % update_every:
        raise ValueError(
            f"end_step - begin_step = {end_step - begin_step} must be >= 0 and a multiple of "
            f"update_every={update_every}"
        )
    span = max(end_step - begin_step, 1)

    def schedule(step):
        t = jnp.asarray(step, jnp.int32)
        tq = begin_step + ((t - begin_step) // update_every) * update_every
        frac = jnp.clip((tq - begin_step) / span, 0.0, 1.0)
        s = final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - frac) ** 3
        return jnp.where(t < begin_step, initial_sparsity, s).astype(jnp.float32)

    schedule.update_every, schedule.begin_step, schedule.end_step = update_every, begin_step, end_step
    return schedule


def _keep_largest(scores: jax.Array, sparsity: jax.Array) -> jax.Array:
    """bool mask of `scores`' shape keeping all but the round(sparsity * size) smallest (ties: earlier first)."""
    flat = scores.reshape(-1)
    n = flat.shape[0]
    k = jnp.round(sparsity * n).astype(jnp.int32)
    order = jnp.argsort(flat, stable=True)
    rank = jnp.zeros(n, jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
    return (rank >= k).reshape(scores.shape)


def magnitude_masks(scores: Any, sparsity: jax.Array | float, scope: str = "global") -> Any:
    """Masks (bool pytree like `scores`) keeping the largest |scores|: per leaf ("layer") or over all leaves
    ("global"), pruning exactly round(sparsity * size) (resp. round(sparsity * total)) entries."""
    if scope not in SCOPES:
        raise ValueError(f"scope={scope!r} is not one of {SCOPES}")
    sparsity = jnp.asarray(sparsity, jnp.float32)
    leaves, treedef = jax.tree.flatten(scores)
    if not leaves:
        return scores
    mags = [jnp.abs(x).astype(jnp.float32) for x in leaves]
    if scope == "layer":
        return jax.tree.unflatten(treedef, [_keep_largest(m, sparsity) for m in mags])
    flat = _keep_largest(jnp.concatenate([m.reshape(-1) for m in mags]), sparsity)
    splits = [int(s) for s in np.cumsum([m.size for m in mags])[:-1]]  # static sizes
    parts = jnp.split(flat, splits)
    return jax.tree.unflatten(treedef, [p.reshape(m.shape) for p, m in zip(parts, mags, strict=True)])


class PruneState(NamedTuple):
    """count: updates so far (int32); masks: bool pytree like the params (the weight's shape on prunable leaves, a
    scalar True elsewhere); sparsity: the last target."""

    count: jax.Array
    masks: Any
    sparsity: jax.Array


def _prune_masks(
    schedule: Schedule, scope: str, begin_step: int, end_step: int, update_every: int, prunable: Any
) -> optax.GradientTransformation:
    """The transformation; masks of the leaves `prunable` rejects are scalar `True` and their updates pass."""

    def selection(params):
        select = prunable(params) if callable(prunable) else prunable
        return jax.tree.structure(params).flatten_up_to(select)

    def init_fn(params):
        leaves, treedef = jax.tree.flatten(params)
        masks = [jnp.ones(jnp.shape(p) if s else (), bool) for p, s in zip(leaves, selection(params), strict=True)]
        return PruneState(jnp.zeros((), jnp.int32), jax.tree.unflatten(treedef, masks), jnp.zeros((), jnp.float32))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("magnitude_prune needs the params: call tx.update(updates, state, params)")
        c = state.count
        due = (c >= begin_step) & (c <= end_step) & ((c - begin_step) % update_every == 0)
        target = schedule(c)
        select = selection(params)
        treedef = jax.tree.structure(params)
        p_l, u_l, m_l = jax.tree.leaves(params), treedef.flatten_up_to(updates), treedef.flatten_up_to(state.masks)
        idx = [i for i, s in enumerate(select) if s]
        scores = [jnp.where(m_l[i], jnp.abs(p_l[i] + u_l[i]), 0.0) for i in idx]
        new = jax.lax.cond(due, lambda: magnitude_masks(scores, target, scope), lambda: [m_l[i] for i in idx])
        masks, out = list(m_l), list(u_l)
        for i, m in zip(idx, new, strict=True):
            masks[i] = m
            out[i] = jnp.where(m, u_l[i], -p_l[i])
        sparsity = jnp.where(due, target, state.sparsity)
        return treedef.unflatten(out), PruneState(c + 1, treedef.unflatten(masks), sparsity)

    return optax.GradientTransformation(init_fn, update_fn)


def magnitude_prune(
    sparsity: float | Schedule,
    *,
    scope: str = "global",
    begin_step: int | None = None,
    end_step: int | None = None,
    update_every: int | None = None,
    prunable: Any = default_prunable,
) -> optax.GradientTransformation:
    """Magnitude pruning as an optax transformation to chain after the optimizer (see the module docstring).

    `sparsity`: a float (one-shot: masks computed once, at update `begin_step`, default 0, then kept) or a schedule
    step -> sparsity (e.g. `cubic_schedule`, whose begin/end/update_every are used unless given). `prunable`: a
    bool pytree or a function params -> bool pytree (as `optax.masked` takes)."""
    if scope not in SCOPES:
        raise ValueError(f"scope={scope!r} is not one of {SCOPES}")
    if callable(sparsity):
        schedule = sparsity
        begin_step = getattr(schedule, "begin_step", 0) if begin_step is None else begin_step
        end_step = getattr(schedule, "end_step", begin_step) if end_step is None else end_step
        update_every = getattr(schedule, "update_every", 1) if update_every is None else update_every
    else:
        if not 0.0 <= float(sparsity) < 1.0:
            raise ValueError(f"sparsity={sparsity} must be in [0, 1)")
        value = float(sparsity)
        schedule = lambda step: jnp.float32(value)
        begin_step = 0 if begin_step is None else begin_step
        end_step, update_every = begin_step, 1
    return _prune_masks(schedule, scope, begin_step, end_step, update_every, prunable)


def prune_state(opt_state: Any) -> PruneState:
    """The `PruneState` inside an optimizer state (e.g. of `optax.chain(adam, magnitude_prune(...))`)."""
    found = [
        s for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, PruneState)) if isinstance(s, PruneState)
    ]
    if len(found) != 1:
        raise ValueError(f"expected one PruneState in the optimizer state, found {len(found)}")
    return found[0]


def prune_params(params: Any, sparsity: float, *, scope: str = "global", prunable: Any = default_prunable):
    """One-shot: (params with the smallest-magnitude prunable weights set to 0, masks: bool pytree, True for
    leaves that are not prunable)."""
    select = prunable(params) if callable(prunable) else prunable
    sub = jax.tree.map(lambda p, s: p if s else None, params, select)
    masks = magnitude_masks(sub, sparsity, scope)
    flat_masks = iter(jax.tree.leaves(masks))
    full = jax.tree.map(lambda p, s: next(flat_masks) if s else jnp.ones(jnp.shape(p), bool), params, select)
    return jax.tree.map(lambda p, m: jnp.where(m, p, jnp.zeros_like(p)), params, full), full


def sparsity_report(params: Any, prunable: Any = default_prunable) -> dict[str, dict[str, float]]:
    """{leaf path: {"size", "zeros", "sparsity"}} of the prunable leaves (exact zeros counted), plus "total"."""
    select = prunable(params) if callable(prunable) else prunable
    report, size, zeros = {}, 0, 0
    for (path, p), s in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(select), strict=True):
        if not s:
            continue
        n, z = int(p.size), int(jnp.sum(p == 0))
        name = jax.tree_util.keystr(path, simple=True, separator="/").removesuffix("/value")
        report[name] = {"size": n, "zeros": z, "sparsity": z / n}
        size, zeros = size + n, zeros + z
    report["total"] = {"size": size, "zeros": zeros, "sparsity": zeros / max(size, 1)}
    return report
