"""Device meshes from config: `config.mesh = dict(data=-1, fsdp=1, tensor=1, ...)` (-1 fills the rest)."""

from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

AXES = ("data", "fsdp", "sequence", "tensor", "expert", "pipeline")


def mesh_shape(axes: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """Resolves the -1 entry of `axes` so the product equals `num_devices`; errors name the bad axis."""
    unknown = [a for a in axes if a not in AXES]
    if unknown:
        raise ValueError(f"config.mesh has unknown axis {unknown[0]!r}; known axes: {', '.join(AXES)}")
    sizes = dict(axes)
    fill = [a for a, n in sizes.items() if n == -1]
    if len(fill) > 1:
        raise ValueError(f"config.mesh: only one axis may be -1, got {fill}")
    for a, n in sizes.items():
        if n != -1 and (not isinstance(n, int) or n < 1):
            raise ValueError(f"config.mesh.{a} must be a positive int or -1, got {n!r}")
    fixed = int(np.prod([n for n in sizes.values() if n != -1]))
    if num_devices % fixed:
        raise ValueError(
            f"config.mesh {dict(axes)}: the fixed axes multiply to {fixed}, "
            f"which does not divide the {num_devices} available devices"
        )
    if fill:
        sizes[fill[0]] = num_devices // fixed
    elif fixed != num_devices:
        raise ValueError(f"config.mesh {dict(axes)} uses {fixed} devices but {num_devices} are available")
    return sizes


def make_mesh(axes: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh with every axis in `AXES` (missing ones get size 1), all `AxisType.Auto`."""
    devices = list(devices) if devices is not None else jax.devices()
    sizes = mesh_shape(axes, len(devices))
    names = tuple(a for a in AXES)
    shape = tuple(sizes.get(a, 1) for a in names)
    return jax.make_mesh(shape, names, axis_types=(AxisType.Auto,) * len(names), devices=devices)
