"""Checkpointer: bitwise round trips, keep-N, restore onto another mesh, clear errors on damaged checkpoints."""

import glob
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from jaxdl.checkpoint import Checkpointer, CheckpointError


def _tree(sharding=None):
    tree = {
        "w": jax.random.normal(jax.random.key(0), (64, 128)),
        "nested": {"b": jnp.arange(16, dtype=jnp.bfloat16), "n": jnp.int32(7)},
        "rng": jax.random.key_data(jax.random.key(3)),
    }
    return jax.device_put(tree, sharding) if sharding is not None else tree


def _abstract(tree, sharding):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def _replicated():
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    return NamedSharding(mesh, PartitionSpec())


def test_round_trip_is_bitwise_and_keeps_newest(tmp_path):
    tree = _tree()
    with Checkpointer(tmp_path, max_to_keep=2) as ck:
        for step in (10, 20, 30):
            ck.save(step, jax.tree.map(lambda x, s=step: x + s if x.dtype != jnp.uint32 else x, tree), {"step": step})
    ck = Checkpointer(tmp_path)
    assert ck.all_steps() == [20, 30] and ck.latest_step() == 30
    state, meta = ck.restore(_abstract(tree, _replicated()))
    assert meta == {"step": 30}
    expected = jax.tree.map(lambda x: x + 30 if x.dtype != jnp.uint32 else x, tree)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(expected), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    state, meta = ck.restore(_abstract(tree, _replicated()), step=20)
    assert meta == {"step": 20}
    ck.close()


def test_restore_onto_a_different_mesh(tmp_path):
    mesh8 = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    tree = {"w": jax.device_put(jnp.arange(64.0 * 8).reshape(64, 8), NamedSharding(mesh8, PartitionSpec("data")))}
    with Checkpointer(tmp_path) as ck:
        ck.save(1, tree, {})
    mesh24 = jax.make_mesh((2, 4), ("a", "b"), axis_types=(AxisType.Auto,) * 2)
    target = NamedSharding(mesh24, PartitionSpec("b", "a"))
    with Checkpointer(tmp_path) as ck:
        state, _ = ck.restore({"w": jax.ShapeDtypeStruct((64, 8), jnp.float32, sharding=target)})
    assert state["w"].sharding == target
    np.testing.assert_array_equal(np.asarray(state["w"]), np.arange(64.0 * 8).reshape(64, 8))


def _saved(tmp_path):
    tree = {"w": jnp.arange(200_000.0), "b": jnp.ones((3, 4), jnp.bfloat16)}
    with Checkpointer(tmp_path) as ck:
        ck.save(5, tree, {"step": 5})
    return tree, str(tmp_path / "5")


def _data_files(step_dir):
    return glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)


def _delete_one(step_dir):
    os.remove(max(_data_files(step_dir), key=os.path.getsize))


def _garble(step_dir):
    for f in _data_files(step_dir):
        raw = bytearray(open(f, "rb").read())
        raw[len(raw) // 2 :] = bytes(len(raw) - len(raw) // 2)
        open(f, "wb").write(bytes(raw))


def _truncate(step_dir):
    for f in _data_files(step_dir):
        with open(f, "r+b") as fh:
            fh.truncate(10)


@pytest.mark.parametrize(
    "damage",
    [
        _delete_one,
        _garble,
        _truncate,
        lambda d: os.remove(os.path.join(d, "state", "manifest.ocdbt")),
        lambda d: os.remove(os.path.join(d, "meta", "metadata")),
        lambda d: shutil.rmtree(os.path.join(d, "state")),
    ],
    ids=["delete_data_file", "garble", "truncate", "delete_manifest", "delete_meta", "delete_state_dir"],
)
def test_damaged_checkpoint_raises_naming_the_step_dir(tmp_path, damage):
    tree, step_dir = _saved(tmp_path)
    damage(step_dir)
    with Checkpointer(tmp_path) as ck, pytest.raises(CheckpointError, match=step_dir):
        ck.restore(_abstract(tree, _replicated()))


def test_shape_mismatch_is_a_checkpoint_error(tmp_path):
    tree, step_dir = _saved(tmp_path)
    wrong = _abstract(tree, _replicated())
    wrong["w"] = jax.ShapeDtypeStruct((7,), jnp.float32, sharding=_replicated())
    with Checkpointer(tmp_path) as ck, pytest.raises(CheckpointError, match=step_dir):
        ck.restore(wrong)


def test_unfinished_save_is_ignored(tmp_path):
    tree, step_dir = _saved(tmp_path)
    shutil.copytree(step_dir, str(tmp_path / "9.orbax-checkpoint-tmp-1234"))  # what a killed save leaves
    with Checkpointer(tmp_path) as ck:
        assert ck.latest_step() == 5
        _, meta = ck.restore(_abstract(tree, _replicated()))
    assert meta == {"step": 5}


def test_no_checkpoint_is_an_error_naming_the_dir(tmp_path):
    with Checkpointer(tmp_path / "ck") as ck, pytest.raises(CheckpointError, match=str(tmp_path / "ck")):
        ck.restore({"w": jax.ShapeDtypeStruct((2,), jnp.float32, sharding=_replicated())})
