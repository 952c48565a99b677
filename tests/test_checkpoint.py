"""Checkpointer: bitwise round trips, keep-N, restore onto another mesh, unfinished saves ignored, and a
CheckpointError naming the step directory for every damaged or mismatched checkpoint."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdl.checkpoint import Checkpointer, CheckpointError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mesh(shape=(8,), names=("data",)):
    return jax.make_mesh(shape, names, axis_types=(AxisType.Auto,) * len(shape))


def _tree(step=0):
    """float32 (with -0, nan, inf), bfloat16, int32 and PRNG key data (uint32), nested, partly sharded."""
    data = NamedSharding(_mesh(), P("data"))
    w = jax.random.normal(jax.random.key(step), (64, 128)).at[0, :3].set(jnp.array([-0.0, jnp.nan, jnp.inf]))
    return {
        "params": {"w": jax.device_put(w, data), "b": jnp.arange(16, dtype=jnp.bfloat16) / 3},
        "opt": [jnp.int32(step), jax.device_put(jnp.arange(-8, 8, dtype=jnp.int32), data)],
        "rng": jax.random.key_data(jax.random.key(step + 1)),
    }


def _abstract(tree, sharding=None):
    sharding = sharding or NamedSharding(_mesh(), P())
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def _assert_bitwise_equal(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert (a.dtype, a.shape) == (b.dtype, b.shape)
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("async_save", [True, False])
def test_round_trip_is_bitwise(tmp_path, async_save):
    tree, meta = _tree(7), {"step": 7, "data": {"epoch": 1, "offsets": [3, 5]}, "lr": 1e-3, "name": "x"}
    with Checkpointer(tmp_path, async_save=async_save) as ck:
        ck.save(7, tree, meta)
    with Checkpointer(tmp_path) as ck:
        state, got_meta = ck.restore(_abstract(tree))
    _assert_bitwise_equal(state, tree)
    assert got_meta == meta


def test_async_save_is_safe_to_donate_and_wait_finishes_it(tmp_path):
    tree = _tree(1)
    with Checkpointer(tmp_path, async_save=True) as ck:
        ck.save(1, tree, {"step": 1})
        for x in jax.tree.leaves(tree):  # what donating the state to the next train step does
            x.delete()
        ck.wait()
        assert ck.latest_step() == 1
        assert sorted(os.listdir(tmp_path)) == ["1"]
        state, _ = ck.restore(_abstract(_tree(1)))
    _assert_bitwise_equal(state, _tree(1))


def test_keeps_exactly_the_newest_n(tmp_path):
    with Checkpointer(tmp_path, max_to_keep=2) as ck:
        assert ck.all_steps() == [] and ck.latest_step() is None
        for step in (10, 20, 30, 40):
            ck.save(step, _tree(step), {"step": step})
        ck.save(40, _tree(0), {"step": "again"})  # not after the latest step: skipped, never overwrites
        assert ck.all_steps() == [30, 40] and ck.latest_step() == 40
        assert sorted(os.listdir(tmp_path)) == ["30", "40"]
        for step in (30, 40):
            state, meta = ck.restore(_abstract(_tree()), step=step)
            _assert_bitwise_equal(state, _tree(step))
            assert meta == {"step": step}
        with pytest.raises(CheckpointError, match=str(tmp_path / "20")):
            ck.restore(_abstract(_tree()), step=20)


@pytest.mark.parametrize("target", ["replicated", "mesh2x4"])
def test_restore_onto_a_different_sharding(tmp_path, target):
    w = jnp.arange(64.0 * 8).reshape(64, 8)
    tree = {"w": jax.device_put(w, NamedSharding(_mesh(), P("data"))), "k": jax.random.key_data(jax.random.key(0))}
    with Checkpointer(tmp_path) as ck:
        ck.save(1, tree, {})
    if target == "replicated":
        sharding = NamedSharding(_mesh(), P())
    else:
        sharding = NamedSharding(_mesh((2, 4), ("data", "tensor")), P("tensor", "data"))
    with Checkpointer(tmp_path) as ck:
        state, _ = ck.restore(
            {"w": jax.ShapeDtypeStruct((64, 8), jnp.float32, sharding=sharding), "k": _abstract(tree)["k"]}
        )
    assert state["w"].sharding == sharding
    np.testing.assert_array_equal(np.asarray(state["w"]), np.asarray(w))
    np.testing.assert_array_equal(np.asarray(state["k"]), np.asarray(tree["k"]))


# --------------------------------------------------------------------------------------------- damage
def _saved(tmp_path):
    tree = {"w": jax.random.normal(jax.random.key(0), (100_000,)), "b": jnp.ones((3, 4), jnp.bfloat16)}
    with Checkpointer(tmp_path) as ck:
        ck.save(5, tree, {"step": 5})
    return tree, str(tmp_path / "5")


def _largest_data_file(step_dir):
    """The file holding w's (zstd-compressed, unchecksummed) chunk: ocdbt data files live in state/**/d/."""
    return max(glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True), key=os.path.getsize)


def _flip_one_byte(step_dir):  # orbax/tensorstore alone restore this as silently wrong values
    path = _largest_data_file(step_dir)
    raw = bytearray(open(path, "rb").read())
    raw[len(raw) // 2] ^= 0xFF
    open(path, "wb").write(bytes(raw))


def _truncate(step_dir):
    path = _largest_data_file(step_dir)
    os.truncate(path, os.path.getsize(path) // 2)


def _edit_meta(step_dir):  # still valid JSON, different value
    path = os.path.join(step_dir, "meta", "metadata")
    text = open(path).read()
    assert '"step": 5' in text
    open(path, "w").write(text.replace('"step": 5', '"step": 6'))


DAMAGE = {
    "delete_data_file": lambda d: os.remove(_largest_data_file(d)),
    "flip_one_byte": _flip_one_byte,
    "truncate_data_file": _truncate,
    "delete_ocdbt_manifest": lambda d: os.remove(os.path.join(d, "state", "manifest.ocdbt")),
    "garble_meta": lambda d: open(os.path.join(d, "meta", "metadata"), "w").write('{"step": '),
    "edit_meta": _edit_meta,
    "delete_manifest_item": lambda d: shutil.rmtree(os.path.join(d, "manifest")),
    "delete_state_item": lambda d: shutil.rmtree(os.path.join(d, "state")),
}


# a failed tensorstore read leaves orbax's other pending reads calling back into a closed event loop: noise only
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_damaged_checkpoint_raises_naming_the_step_dir(tmp_path, damage):
    tree, step_dir = _saved(tmp_path)
    damage(step_dir)
    with Checkpointer(tmp_path) as ck:
        assert ck.latest_step() == 5
        with pytest.raises(CheckpointError, match=step_dir):
            ck.restore(_abstract(tree))


@pytest.mark.parametrize(
    "change",
    [
        lambda a: a | {"w": jax.ShapeDtypeStruct((7,), jnp.float32, sharding=a["w"].sharding)},
        lambda a: a | {"w": jax.ShapeDtypeStruct(a["w"].shape, jnp.bfloat16, sharding=a["w"].sharding)},
        lambda a: {"w": a["w"]},
        lambda a: a | {"extra": a["b"]},
        lambda a: [a["b"], a["w"]],
    ],
    ids=["shape", "dtype", "missing_leaf", "extra_leaf", "structure"],
)
def test_mismatched_request_raises_naming_the_step_dir(tmp_path, change):
    tree, step_dir = _saved(tmp_path)
    with Checkpointer(tmp_path) as ck, pytest.raises(CheckpointError, match=step_dir) as info:
        ck.restore(change(_abstract(tree)))
    assert "does not fit the requested state" in str(info.value) and info.value.__cause__ is not None


def test_no_checkpoint_raises_naming_the_dir(tmp_path):
    with Checkpointer(tmp_path / "ck") as ck, pytest.raises(CheckpointError, match=str(tmp_path / "ck")):
        ck.restore({"w": jax.ShapeDtypeStruct((2,), jnp.float32, sharding=NamedSharding(_mesh(), P()))})


# ----------------------------------------------------------------------------------- unfinished saves
def test_leftover_tmp_dirs_are_ignored_and_replaced(tmp_path):
    tree, step_dir = _saved(tmp_path)
    shutil.copytree(step_dir, tmp_path / "9.orbax-checkpoint-tmp")  # what orbax 0.12 leaves when killed
    shutil.copytree(step_dir, tmp_path / "8.orbax-checkpoint-tmp-1700000000")  # older orbax naming
    with Checkpointer(tmp_path) as ck:
        assert ck.all_steps() == [5]
        _, meta = ck.restore(_abstract(tree))
        assert meta == {"step": 5}
        ck.save(9, jax.tree.map(lambda x: x + 1, tree), {"step": 9})  # resuming saves step 9 again
        assert ck.all_steps() == [5, 9]
        state, meta = ck.restore(_abstract(tree))
    assert meta == {"step": 9} and not os.path.exists(tmp_path / "9.orbax-checkpoint-tmp")
    _assert_bitwise_equal(state, jax.tree.map(lambda x: x + 1, tree))


KILLED_AT_COMMIT = """
import os, signal, sys
import jax.numpy as jnp
from jaxdl.checkpoint import Checkpointer

def rename(src, dst, _rename=os.rename):  # the process dies when orbax commits step 2
    if os.path.basename(dst) == "2":
        os.kill(os.getpid(), signal.SIGKILL)
    _rename(src, dst)

os.rename = rename
ck = Checkpointer(sys.argv[1])
for step in (1, 2):
    ck.save(step, {"w": jnp.full((1000,), step, jnp.float32)}, {"step": step})
    ck.wait()
"""


def test_save_killed_before_commit_leaves_an_ignored_tmp_dir(tmp_path):
    env = os.environ | {"PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_AT_COMMIT), str(tmp_path)], env=env, capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    leftover = glob.glob(str(tmp_path / "2.orbax-checkpoint-tmp*"))
    assert sorted(os.listdir(tmp_path)) == ["1", os.path.basename(leftover[0])]
    assert json.load(open(os.path.join(leftover[0], "meta", "metadata"))) == {"step": 2}  # fully written, not committed
    with Checkpointer(tmp_path) as ck:
        assert ck.latest_step() == 1
        state, meta = ck.restore(
            {"w": jax.ShapeDtypeStruct((1000,), jnp.float32, sharding=NamedSharding(_mesh(), P()))}
        )
    assert meta == {"step": 1}
    np.testing.assert_array_equal(np.asarray(state["w"]), np.ones(1000, np.float32))
