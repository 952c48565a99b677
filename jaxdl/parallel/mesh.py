"""Device meshes from config: `config.mesh = dict(data=-1, fsdp=1, tensor=1, ...)` (-1 fills the rest).

Multi-slice / multi-node jobs add `config.mesh_dcn` (the axis sizes across slices or hosts, over the slower
data-center network); the mesh axis sizes are then the products `mesh * mesh_dcn`, laid out by
`mesh_utils.create_hybrid_device_mesh` so that each slice (TPU) or process (GPU/CPU) holds a contiguous block
and only the `mesh_dcn` axes cross the network. Put `data` (or `pipeline`) across the DCN, never `tensor`.
"""

from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh

from jaxdl.config import AXES  # the axis names live with the config schema


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


def make_mesh(
    axes: Mapping[str, int], devices: Sequence[jax.Device] | None = None, dcn: Mapping[str, int] | None = None
) -> Mesh:
    """A mesh with every axis in `AXES` (missing ones get size 1), all `AxisType.Auto`; `dcn` as in the module
    docstring (the -1 axis of `axes` then fills the devices of one slice/process)."""
    devices = list(devices) if devices is not None else jax.devices()
    names = tuple(AXES)
    types = (AxisType.Auto,) * len(names)
    dcn = {a: n for a, n in (dcn or {}).items()}
    if [a for a in dcn if a not in AXES]:
        raise ValueError(f"config.mesh_dcn has unknown axis {[a for a in dcn if a not in AXES][0]!r}; known: {AXES}")
    granules = int(np.prod(list(dcn.values()) or [1]))
    if granules == 1:
        sizes = mesh_shape(axes, len(devices))
        return jax.make_mesh(tuple(sizes.get(a, 1) for a in names), names, axis_types=types, devices=devices)
    if len(devices) % granules:
        raise ValueError(
            f"config.mesh_dcn {dcn} needs {granules} slices/processes; {len(devices)} devices do not split"
        )
    sizes = mesh_shape(axes, len(devices) // granules)
    per_slice = hasattr(devices[0], "slice_index") and devices[0].platform == "tpu"
    ids = mesh_utils.create_hybrid_device_mesh(
        tuple(sizes.get(a, 1) for a in names),
        tuple(dcn.get(a, 1) for a in names),
        devices,
        process_is_granule=not per_slice,
    )
    return Mesh(ids, names, axis_types=types)
