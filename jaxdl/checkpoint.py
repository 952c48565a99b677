"""Checkpoints: the only module that talks to orbax.

An orbax CheckpointManager with async saves and a keep-N policy. Saves are atomic (orbax writes a temporary
directory and renames it when the save is complete), so an unfinished save left by a killed process is never
listed or restored. Restoring takes an abstract state (ShapeDtypeStructs with shardings), so a checkpoint can
land on a different mesh. Any restore failure raises CheckpointError naming the step directory: a run never
silently starts from scratch over a bad checkpoint.
"""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

_ITEMS = ("state", "meta")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, partial or corrupt; the message names its directory."""


class Checkpointer:
    """Saves and restores {state: pytree of jax.Array, meta: JSON dict} by step under `directory`."""

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3, async_save: bool = True):
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def all_steps(self) -> list[int]:
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: Any, meta: dict, *, force: bool = False) -> None:
        """Starts an async save of `state` and `meta` at `step` (returns once the arrays are copied to host)."""
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=force,
        )

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """(state, meta) at `step` (default: latest), laid out as `abstract_state`'s shardings."""
        self.wait()
        steps = self.all_steps()
        if step is None:
            if not steps:
                raise CheckpointError(f"no checkpoint to restore in {self.directory}")
            step = steps[-1]
        path = self.step_dir(step)
        if step not in steps:
            raise CheckpointError(f"checkpoint {path} does not exist (steps present: {steps})")
        missing = [item for item in _ITEMS if not os.path.isdir(os.path.join(path, item))]
        if missing:
            raise CheckpointError(f"checkpoint {path} is incomplete: item(s) {missing} missing")
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()),
            )
            state = restored["state"]
            _check_like(state, abstract_state)
        except CheckpointError as e:
            raise CheckpointError(f"checkpoint {path}: {e}") from None
        except Exception as e:  # orbax/tensorstore raise many types; all mean this checkpoint is unusable
            raise CheckpointError(f"checkpoint {path} is corrupt or does not match the model: {e}") from e
        return state, dict(restored["meta"] or {})

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_like(state: Any, abstract_state: Any) -> None:
    """Structure, shapes and dtypes of the restored tree equal the requested ones."""
    got, want = jax.tree_util.tree_structure(state), jax.tree_util.tree_structure(abstract_state)
    if got != want:
        raise CheckpointError(f"restored tree structure differs from the requested one:\n{got}\nvs\n{want}")
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(state), jax.tree.leaves(abstract_state), strict=True):
        if x.shape != y.shape or x.dtype != y.dtype:
            raise CheckpointError(
                f"{jax.tree_util.keystr(path)}: restored {x.dtype}{list(x.shape)}, expected {y.dtype}{list(y.shape)}"
            )
