"""DistilBERT-style initialization of a shallower student from a deeper teacher (Sanh et al. 2019, §3: "we
initialize the student from the teacher by taking one layer out of two").

`init_from_layers(student, teacher, layers)` copies, in place, every parameter (and BatchNorm statistic) of the
student from the teacher: the student's `layers[i]` from the teacher's `layers[layers[i]]`, every other leaf
(embeddings, norms, pooler, heads) from the same path. The two models must have the same width: a leaf whose
path or shape has no counterpart in the teacher is an error naming it (before anything is written), unless its
path contains one of `exclude` (kept at the student's own initialization, e.g. a classifier for other classes).

It works on any model that holds its blocks in a list attribute (`attr`, "layers" for `jaxdl.models.language.bert`);
it is a state copy, so it needs no knowledge of what a block computes.
"""

from __future__ import annotations

from collections.abc import Sequence

from flax import nnx

COPIED = nnx.Any(nnx.Param, nnx.BatchStat)


def every_other(teacher_depth: int, student_depth: int) -> tuple[int, ...]:
    """DistilBERT's choice, teacher layers 0, 2, 4, ...: `(0, 2, ..., 2 (student_depth - 1))`; needs
    2 · student_depth - 1 ≤ teacher_depth."""
    if student_depth < 1 or 2 * student_depth - 1 > teacher_depth:
        raise ValueError(f"every other layer of a {teacher_depth}-layer teacher cannot fill {student_depth} layers")
    return tuple(range(0, 2 * student_depth, 2))


def init_from_layers(
    student: nnx.Module,
    teacher: nnx.Module,
    layers: Sequence[int],
    *,
    attr: str = "layers",
    exclude: Sequence[str] = (),
) -> dict[tuple, tuple]:
    """Copies the teacher's weights into `student` (in place): `student.<attr>[i]` ← `teacher.<attr>[layers[i]]`,
    everything else from the same path. Returns {student path: teacher path} of every copied leaf."""
    s_blocks, t_blocks = getattr(student, attr, None), getattr(teacher, attr, None)
    if s_blocks is None or t_blocks is None:
        raise ValueError(f"both models need a list attribute {attr!r} of blocks")
    layers = tuple(int(i) for i in layers)
    if len(layers) != len(s_blocks):
        raise ValueError(f"layers={layers}: {len(layers)} teacher layers for a {len(s_blocks)}-layer student")
    bad = [i for i in layers if not 0 <= i < len(t_blocks)]
    if bad:
        raise ValueError(f"layers={layers}: {bad} out of range for a {len(t_blocks)}-layer teacher")

    teacher_leaves = dict(nnx.to_flat_state(nnx.state(teacher, COPIED)))
    student_state = nnx.state(student, COPIED)
    copied, new = {}, []
    for path, leaf in nnx.to_flat_state(student_state):
        if any(x in "/".join(map(str, path)) for x in exclude):
            new.append((path, leaf))
            continue
        source = (attr, layers[path[1]], *path[2:]) if path[0] == attr else path
        if source not in teacher_leaves:
            raise ValueError(f"student parameter {'/'.join(map(str, path))} has no teacher counterpart {source}")
        t = teacher_leaves[source]
        if tuple(t.shape) != tuple(leaf.shape) or type(t) is not type(leaf):
            raise ValueError(
                f"student parameter {'/'.join(map(str, path))} {type(leaf).__name__}{tuple(leaf.shape)} vs teacher "
                f"{'/'.join(map(str, source))} {type(t).__name__}{tuple(t.shape)}: the widths must match"
            )
        new.append((path, leaf.replace(t.get_value().astype(leaf.dtype))))
        copied[path] = source
    nnx.update(student, nnx.from_flat_state(new))
    return copied
