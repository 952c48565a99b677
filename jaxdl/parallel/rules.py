"""Logical axis names → mesh axes (MaxText `logical_axis_rules` style); the rules live in the config.

Models annotate parameters with logical names (`nnx.with_partitioning(init, ("embed", "mlp"))`); the trainer
maps them to mesh axes with the rules of `config.sharding.rules`, a sequence of `(logical, mesh_axes)` pairs
where mesh_axes is a mesh axis name, a tuple of them, or None (replicated). The first rule for a name wins.
"""

import contextlib
import threading
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Rules = Sequence[tuple[str, str | Sequence[str] | None]]

# Data parallel over (data, fsdp); everything else replicated. Strategies add to this.
DEFAULT_RULES: tuple = (("batch", ("data", "fsdp")),)


def _mesh_axes(name, rules: Rules, mesh: Mesh):
    if name is None:
        return None
    for logical, axes in rules:
        if logical == name:
            if axes is None:
                return None
            axes = (axes,) if isinstance(axes, str) else tuple(axes)
            for a in axes:
                if a not in mesh.axis_names:
                    raise ValueError(f"sharding rule {logical!r} -> {a!r}: {a!r} is not a mesh axis {mesh.axis_names}")
            return axes[0] if len(axes) == 1 else axes
    return None  # no rule: replicated along that dimension


def logical_to_mesh(spec: PartitionSpec, rules: Rules, mesh: Mesh) -> PartitionSpec:
    """Maps a PartitionSpec of logical names to one of mesh axes."""
    return PartitionSpec(*(_mesh_axes(n, rules, mesh) for n in spec))


def batch_sharding(mesh: Mesh, rules: Rules) -> NamedSharding:
    """Sharding of a batch: leading axis over the mesh axes of logical `batch`."""
    return NamedSharding(mesh, logical_to_mesh(PartitionSpec("batch"), rules, mesh))


def tree_shardings(tree, mesh: Mesh, rules: Rules):
    """NamedShardings for a pytree holding nnx Variables (mapped by their logical metadata) and plain arrays
    (replicated), e.g. the trainer state {params, rest, opt_state, step, rng}."""
    specs = nnx.get_partition_spec(tree)
    return jax.tree.map(
        lambda s: NamedSharding(mesh, logical_to_mesh(s, rules, mesh)),
        specs,
        is_leaf=lambda x: isinstance(x, PartitionSpec),
    )


# ------------------------------------------------------------------------------------------- activations
_active = threading.local()


@contextlib.contextmanager
def activation_rules(mesh: Mesh, rules: Rules):
    """Within this context (the trainer enters it while tracing its steps), `constrain` pins activations."""
    previous = getattr(_active, "value", None)
    _active.value = (mesh, tuple(rules))
    try:
        yield
    finally:
        _active.value = previous


def active() -> tuple[Mesh, tuple] | None:
    """(mesh, rules) of the enclosing `activation_rules` context, or None outside one (e.g. eager use)."""
    return getattr(_active, "value", None)


def mesh_axis_size(logical: str) -> int:
    """How many devices the logical axis `logical` is split over in the active context (1 outside one)."""
    ctx = active()
    if ctx is None:
        return 1
    mesh, rules = ctx
    axes = _mesh_axes(logical, rules, mesh)
    axes = () if axes is None else (axes,) if isinstance(axes, str) else axes
    return int(np.prod([mesh.shape[a] for a in axes], dtype=int))


def constrain(x: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
    """`with_sharding_constraint` by logical names, e.g. ("batch", "length", "embed"); a no-op outside a trainer.

    Models call this so they never name mesh axes themselves."""
    active = getattr(_active, "value", None)
    if active is None:
        return x
    if len(logical_axes) != x.ndim:
        raise ValueError(f"constrain: {len(logical_axes)} logical axes {tuple(logical_axes)} for a rank-{x.ndim} array")
    mesh, rules = active
    return jax.lax.with_sharding_constraint(
        x, NamedSharding(mesh, logical_to_mesh(PartitionSpec(*logical_axes), rules, mesh))
    )
