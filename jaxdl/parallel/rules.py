"""Logical axis names → mesh axes (MaxText `logical_axis_rules` style); the rules live in the config.

Models annotate parameters with logical names (`nnx.with_partitioning(init, ("embed", "mlp"))`); the trainer
maps them to mesh axes with the rules of `config.sharding.rules`, a sequence of `(logical, mesh_axes)` pairs
where mesh_axes is a mesh axis name, a tuple of them, or None (replicated). The first rule for a name wins.
"""

from collections.abc import Sequence

import jax
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
