"""Logical axis names → mesh axes (MaxText `logical_axis_rules` style); the rules live in the config.

Models annotate parameters with logical names (`nnx.with_partitioning(init, ("embed", "mlp"))`) and activations
with `constrain(x, ("batch", "act_length", "embed"))`; they never name mesh axes. The trainer maps logical names
to mesh axes with rules: a sequence of `(logical, mesh_axes)` pairs, mesh_axes a mesh axis name, a tuple of them,
or None (replicated). The first rule for a name wins, and a mesh axis is used at most once per array (a later
dimension that maps to an axis already used stays replicated), so one rule set serves weights and activations.

`config.sharding.strategy` names the rules as `+`-joined components (`dp`, `fsdp`, `tp`, `sp`, `pp`, `ep`), e.g.
`fsdp+tp`; `config.sharding.rules` are extra rules placed first (so they override the strategy's):

| component | rules | what it is |
|---|---|---|
| `dp`   | batch → (data, fsdp, expert)     | data parallel (always on; params replicated) |
| `fsdp` | embed → fsdp                      | ZeRO-3: params, grads and optimizer state sharded over `fsdp`, gathered per use |
| `tp`   | heads, mlp, vocab → tensor        | Megatron: column-parallel up/qkv, row-parallel down/out, vocab-parallel logits |
| `sp`   | act_length → tensor               | sequence parallel: activations between blocks (norms, dropout) split on length |
| `pp`   | layers → pipeline                 | stacked layers split into pipeline stages (`jaxdl.parallel.pipeline`) |
| `ep`   | expert → expert                   | mixture-of-experts weights split over `expert` (all-to-all dispatch) |
"""

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Rules = Sequence[tuple[str, str | Sequence[str] | None]]

COMPONENTS: dict[str, tuple] = {
    "dp": (("batch", ("data", "fsdp", "expert")),),
    "fsdp": (("embed", "fsdp"),),
    "tp": (("heads", "tensor"), ("mlp", "tensor"), ("vocab", "tensor")),
    "sp": (("act_length", "tensor"),),
    "pp": (("layers", "pipeline"),),
    "ep": (("expert", "expert"),),
}
DEFAULT_RULES: tuple = COMPONENTS["dp"]


def resolve(strategy: str, extra: Rules = ()) -> tuple:
    """Rules for `strategy` ("dp", "fsdp+tp", ...) with `extra` rules first; errors name config.sharding.*."""
    parts = [p.strip() for p in strategy.split("+") if p.strip()] or ["dp"]
    unknown = [p for p in parts if p not in COMPONENTS]
    if unknown:
        raise ValueError(
            f"config.sharding.strategy={strategy!r}: unknown component {unknown[0]!r}; "
            f"components: {', '.join(COMPONENTS)} (joined with '+')"
        )
    rules = [tuple(r) for r in extra]
    for r in rules:
        if len(r) != 2 or not isinstance(r[0], str):
            raise ValueError(f"config.sharding.rules: {r!r} is not a (logical_name, mesh_axes) pair")
    for p in ["dp"] + [p for p in parts if p != "dp"]:
        rules += COMPONENTS[p]
    return tuple(rules)


def _mesh_axes(name, rules: Rules, mesh: Mesh) -> tuple[str, ...]:
    if name is None:
        return ()
    for logical, axes in rules:
        if logical == name:
            axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
            for a in axes:
                if a not in mesh.axis_names:
                    raise ValueError(f"sharding rule {logical!r} -> {a!r}: {a!r} is not a mesh axis {mesh.axis_names}")
            return axes
    return ()  # no rule: replicated along that dimension


def logical_to_mesh(spec: PartitionSpec, rules: Rules, mesh: Mesh) -> PartitionSpec:
    """Maps a PartitionSpec of logical names to one of mesh axes (size-1 mesh axes and reused axes dropped)."""
    used, out = set(), []
    for name in spec:
        axes = tuple(a for a in _mesh_axes(name, rules, mesh) if a not in used and mesh.shape[a] > 1)
        used.update(axes)
        out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*out)


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


def check_divisible(tree, shardings, what: str = "") -> None:
    """Raises ValueError naming the first array whose dimension does not divide its mesh axes."""
    for (path, x), s in zip(jax.tree_util.tree_leaves_with_path(tree), jax.tree.leaves(shardings), strict=True):
        for dim, (n, axes) in enumerate(
            zip(x.shape, tuple(s.spec) + (None,) * (len(x.shape) - len(s.spec)), strict=True)
        ):
            axes = () if axes is None else (axes,) if isinstance(axes, str) else axes
            k = int(np.prod([s.mesh.shape[a] for a in axes], dtype=int))
            if n % k:
                raise ValueError(
                    f"{what}{jax.tree_util.keystr(path)}: dimension {dim} of shape {tuple(x.shape)} is not divisible by "
                    f"the {k} devices of mesh axes {axes} (change config.mesh or config.sharding)"
                )


# ------------------------------------------------------------------------------------------- activations
_active = threading.local()


@contextlib.contextmanager
def activation_rules(mesh: Mesh, rules: Rules, **options: Any):
    """Within this context (the trainer enters it while tracing its steps), `constrain` pins activations and
    `option()` answers layer options such as pipeline microbatches."""
    previous = getattr(_active, "value", None), getattr(_active, "options", None)
    _active.value, _active.options = (mesh, tuple(rules)), dict(options)
    try:
        yield
    finally:
        _active.value, _active.options = previous


def active() -> tuple[Mesh, tuple] | None:
    """(mesh, rules) of the enclosing `activation_rules` context, or None outside one (e.g. eager use)."""
    return getattr(_active, "value", None)


def option(name: str, default: Any = None) -> Any:
    """An option passed to the enclosing `activation_rules` (default outside one or when not given)."""
    return (getattr(_active, "options", None) or {}).get(name, default)


def mesh_axes(logical: str) -> tuple[str, ...]:
    """The mesh axes (of size > 1) the logical axis `logical` is split over in the active context."""
    ctx = active()
    if ctx is None:
        return ()
    mesh, rules = ctx
    return tuple(a for a in _mesh_axes(logical, rules, mesh) if mesh.shape[a] > 1)


def mesh_axis_size(logical: str) -> int:
    """How many devices the logical axis `logical` is split over in the active context (1 outside one)."""
    ctx = active()
    return 1 if ctx is None else int(np.prod([ctx[0].shape[a] for a in mesh_axes(logical)], dtype=int))


def constrain(x: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
    """`with_sharding_constraint` by logical names, e.g. ("batch", "act_length", "embed"); a no-op outside a
    trainer. Models call this so they never name mesh axes themselves."""
    ctx = active()
    if ctx is None:
        return x
    if len(logical_axes) != x.ndim:
        raise ValueError(f"constrain: {len(logical_axes)} logical axes {tuple(logical_axes)} for a rank-{x.ndim} array")
    mesh, rules = ctx
    spec = logical_to_mesh(PartitionSpec(*logical_axes), rules, mesh)
    inner = jax.sharding.get_abstract_mesh()  # inside a shard_map (e.g. a pipeline stage) some axes are manual
    if not inner.empty and inner.manual_axes:
        manual = set(inner.manual_axes)
        drop = lambda a: (
            None if a is None else (tuple(x for x in ((a,) if isinstance(a, str) else a) if x not in manual) or None)
        )
        return jax.lax.with_sharding_constraint(x, NamedSharding(inner, PartitionSpec(*(drop(a) for a in spec))))
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
