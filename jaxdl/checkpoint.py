"""Checkpoints: the only module that talks to orbax.

An orbax CheckpointManager with async saves and a keep-N policy. Each step directory holds three items: `state`
(a pytree of jax.Array, orbax's ocdbt/zarr format), `meta` (a JSON dict) and `manifest` (JSON: dtype, shape and
a uint32 fingerprint of every array, plus a CRC of `meta`).

Saves are atomic: orbax writes `<step>.orbax-checkpoint-tmp` and renames it to `<step>` when every item is
complete, and only names without that suffix count as steps, so what a killed save leaves behind is never listed
or restored (orbax deletes it when that step is saved again). Restores take an abstract state
(ShapeDtypeStructs with shardings), so a checkpoint can land on another mesh. A restore never returns partial,
cast or silently damaged state: orbax catches a damaged ocdbt index, but a flipped byte inside an array's data
file decodes to wrong values without any error, and a dtype mismatch is silently cast, so the restored arrays
are checked against the manifest. Every failure is a CheckpointError naming the step directory.
"""

import json
import logging
import os
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

log = logging.getLogger(__name__)
_ITEMS = ("state", "meta", "manifest")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, partial, corrupt or does not fit the requested state; names the step directory."""


class Checkpointer:
    """Saves and restores (state: pytree of jax.Array, meta: JSON dict) by step under `directory`.

    Every process of a multi-process job calls every method (orbax coordinates the collective writes).
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int | None = 3, async_save: bool = True):
        path = os.fspath(directory)
        self.directory = epath.Path(path if "://" in path else os.path.abspath(path))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)

    def step_dir(self, step: int) -> epath.Path:
        """Where the finished checkpoint of `step` lives."""
        return self.directory / str(step)

    def all_steps(self) -> list[int]:
        """Steps with a finished checkpoint, ascending (waits for pending saves; rereads the directory)."""
        self.wait()
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest finished step, or None if there is none."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: Any, meta: dict, *, force: bool = False) -> None:
        """Saves `state` (pytree of jax.Array) and `meta` (JSON-serializable dict) as `step`.

        With async_save this returns once the arrays are copied off the devices (so `state` may then be donated)
        and the files are written in the background; `wait()` blocks until they are committed. A step at or below
        the latest saved one is skipped with a warning unless `force` (which still never overwrites a step).
        """
        if not force and not self._manager.should_save(step):
            log.warning("checkpoint step %d not saved: not after the latest step %s", step, self._manager.latest_step())
            return
        manifest = {"meta_crc32": _crc(meta), "leaves": _describe(state)}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta), manifest=ocp.args.JsonSave(manifest)
        )
        self._manager.save(step, args=args, force=force)

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """(state, meta) of `step` (default: the latest), laid out as `abstract_state`'s shardings.

        `abstract_state` is a pytree of jax.ShapeDtypeStruct with `.sharding`, structured like the saved state.
        """
        steps = self.all_steps()
        if step is None and not steps:
            raise CheckpointError(f"no finished checkpoint to restore in {self.directory}")
        step = steps[-1] if step is None else step
        path = self.step_dir(step)
        if step not in steps:
            raise CheckpointError(f"checkpoint {path} does not exist (finished steps: {steps})")
        if missing := [item for item in _ITEMS if not (path / item).is_dir()]:
            raise CheckpointError(f"checkpoint {path} is incomplete: item(s) {missing} missing")
        try:
            info = self._manager.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore(), manifest=ocp.args.JsonRestore())
            )
            meta, manifest = info["meta"], info["manifest"]
            if _crc(meta) != manifest["meta_crc32"]:
                raise ValueError("meta does not match its checksum")
            _check_fits(manifest["leaves"], abstract_state)
            restore = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
            state = self._manager.restore(step, args=restore)["state"]
            got = _describe(state)
            if bad := [k for k, v in manifest["leaves"].items() if got[k] != v]:
                raise ValueError(f"array data does not match its fingerprint (corrupt data files?): {', '.join(bad)}")
        except Exception as e:  # orbax/tensorstore raise many types; all mean this checkpoint is unusable
            raise CheckpointError(f"checkpoint {path} is unusable: {type(e).__name__}: {e}") from e
        return state, meta

    def wait(self) -> None:
        """Blocks until pending async saves are finished (re-raises their errors)."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases orbax's resources."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _crc(meta: dict) -> int:
    return zlib.crc32(json.dumps(meta, sort_keys=True).encode())


def _check_fits(saved: dict[str, dict], abstract_state: Any) -> None:
    """Raises ValueError unless `abstract_state` has exactly the saved leaves, shapes and dtypes."""
    want = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(abstract_state)}
    problems = [f"{k} is in the checkpoint but not in the requested state" for k in saved if k not in want]
    problems += [f"{k} is requested but not in the checkpoint" for k in want if k not in saved]
    for k in want.keys() & saved.keys():
        shape, dtype = list(want[k].shape), str(want[k].dtype)
        if [shape, dtype] != [saved[k]["shape"], saved[k]["dtype"]]:
            problems.append(f"{k}: saved {saved[k]['dtype']}{saved[k]['shape']}, requested {dtype}{shape}")
    if problems:
        raise ValueError("checkpoint does not fit the requested state: " + "; ".join(sorted(problems)))


def _describe(state: Any) -> dict[str, dict]:
    """{leaf path: {dtype, shape, fingerprint}}; the fingerprints are computed on the arrays' devices."""
    leaves = jax.tree_util.tree_leaves_with_path(state)
    prints = [_fingerprint(x) for _, x in leaves]  # one jitted reduction per leaf: leaves may sit on different devices
    return {
        jax.tree_util.keystr(p): {
            "dtype": str(x.dtype),
            "shape": list(x.shape),
            "fingerprint": int(np.asarray(h.addressable_data(0))),
        }
        for (p, x), h in zip(leaves, prints, strict=True)
    }


def _mix(h: jax.Array) -> jax.Array:
    """murmur3's 32-bit finalizer: a bijection of uint32 that spreads every input bit over the output."""
    h = (h ^ (h >> 16)) * np.uint32(0x85EBCA6B)
    h = (h ^ (h >> 13)) * np.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


@jax.jit
def _fingerprint(x: jax.Array) -> jax.Array:
    """uint32 hash of `x`'s bits and their positions. Modular integer sums: the same on any sharding."""
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    bits = jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{8 * min(x.dtype.itemsize, 4)}")).astype(jnp.uint32)
    bits = jnp.atleast_1d(bits)  # 8-byte dtypes became [..., 2] uint32 words
    strides = np.cumprod((1,) + bits.shape[:0:-1], dtype=np.uint64)[::-1] % 2**32
    index = sum(jax.lax.broadcasted_iota(jnp.uint32, bits.shape, d) * np.uint32(s) for d, s in enumerate(strides))
    return jnp.sum(_mix(bits ^ _mix(index)), dtype=jnp.uint32)
