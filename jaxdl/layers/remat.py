"""Activation rematerialization: a `jax.checkpoint` policy chosen by name in the config (`model.remat`)."""

from collections.abc import Callable

import jax
from flax import nnx

POLICIES: dict[str, Callable | None] = {
    "none": None,  # no remat: keep every activation
    "full": jax.checkpoint_policies.nothing_saveable,  # recompute the whole block in the backward pass
    "dots": jax.checkpoint_policies.dots_saveable,  # keep matmul/conv outputs, recompute the rest
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "everything": jax.checkpoint_policies.everything_saveable,
}


def check_policy(name: str) -> None:
    if name not in POLICIES:
        raise ValueError(f"config.model.remat={name!r} is not a policy; choose one of {sorted(POLICIES)}")


def remat(fn: Callable, policy: str) -> Callable:
    """`fn(module, *args)` wrapped in `nnx.remat` with the named policy ("none" returns fn unchanged)."""
    check_policy(policy)
    if policy == "none":
        return fn
    return nnx.remat(fn, policy=POLICIES[policy])
