"""Attention launch tables (kernels/launch_table.py): lookup rules, buckets, loading, the tuner; split from
tests/test_attention_kernels.py."""

import json

import jax
import jax.numpy as jnp
import pytest
from attention_helpers import HAS_TRITON

from kernels import launch_table
from kernels.attention import launch_config as lc

pytestmark = pytest.mark.portable
ON_GPU = jax.default_backend() == "gpu"
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (pip install -e '.[test]' on Linux)")


# ----------------------------------------------------------------------------------------- launch tables
def _lookup(device, head_dim=128, causal=True, dtype=jnp.bfloat16, seq=4096, table=None):
    return lc.lookup_config(
        head_dim=head_dim, causal=causal, dtype=dtype, q_len=seq, kv_len=seq, device=device, table=table
    )


def test_config_lookup_published_hopper_entries():
    c = _lookup("H100")
    assert (c.fwd.block_m, c.fwd.block_n, c.fwd.num_warps, c.fwd.num_stages) == (128, 64, 8, 3)
    assert c.source == "published, not yet measured here"
    assert _lookup("H200") == c and _lookup("H100", causal=False, dtype=jnp.float16, seq=100) == c
    for head_dim in (64, 128, 256):
        assert _lookup("H100", head_dim=head_dim).source == "published, not yet measured here"
    for entry in lc.load_table()["entries"]:  # every published entry says where its numbers come from
        if entry["source"].startswith("published"):
            assert entry["source"] == "published, not yet measured here" and entry.get("ref")


def test_config_lookup_fallbacks():
    table = lc.load_table()
    gpu = lc.LaunchConfig.from_json(table["defaults"]["gpu"])
    interp = lc.LaunchConfig.from_json(table["defaults"]["interpret"])
    assert _lookup("A100") == gpu  # no entry for this GPU
    assert _lookup("H100", head_dim=32) == gpu  # nor for this head dim
    assert _lookup("interpret") == interp and _lookup("interpret", head_dim=256, dtype=jnp.float32) == interp
    fp32 = _lookup("H100", dtype=jnp.float32)  # float32 has its own (small-tile) entries on every GPU
    assert fp32.source.startswith("chosen here for float32") and fp32 == _lookup("A100", dtype=jnp.float32)
    assert _lookup("A100", dtype=jnp.float32, head_dim=64).fwd == lc.KernelConfig(32, 32, 8, 1)
    assert _lookup("A100", head_dim=256).source.startswith("chosen here for head_dim 256")


@needs_triton
def test_device_key_names_this_backend():
    """The table's device name of this process: the interpreter on CPU, the GPU's model on a GPU."""
    key = launch_table.device_key()
    if ON_GPU:
        assert key == launch_table.short_device_name(jax.devices()[0].device_kind) and key != "interpret"
        assert key[0] in "ABHLVGR" and any(c.isdigit() for c in key), key  # a model name like H100, not "cuda"
    else:
        assert key == "interpret"
    assert launch_table.device_key("interpret") == "interpret"


def test_config_lookup_specificity_and_buckets():
    table = lc.load_table()
    measured = {
        "device": ["H100"],
        "head_dim": 128,
        "causal": True,
        "dtype": "bfloat16",
        "seq": "<=8192",
        "fwd": {"BLOCK_M": 64, "BLOCK_N": 128, "num_warps": 4, "num_stages": 4},
        "bwd_dkv": {"BLOCK_M": 16, "BLOCK_N": 64, "num_warps": 4, "num_stages": 2},
        "bwd_dq": {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 2},
        "source": "measured by a test",
    }
    table = {**table, "entries": [*table["entries"], measured]}
    assert _lookup("H100", seq=4096, table=table).fwd == lc.KernelConfig(64, 128, 4, 4)  # more specific wins
    assert _lookup("H100", seq=8192, table=table).source == "measured by a test"
    assert _lookup("H100", seq=8193, table=table).source.startswith("published")  # other bucket
    assert _lookup("H100", causal=False, table=table).source.startswith("published")
    assert _lookup("H200", table=table).source.startswith("published")
    assert [lc.seq_bucket(n, 1) for n in (1, 512, 513, 2048, 8192, 32768, 32769)] == [
        "<=512", "<=512", "<=2048", "<=2048", "<=8192", "<=32768", ">32768"
    ]  # fmt: skip
    assert lc.seq_bucket(100, 3000) == "<=8192"


def test_launch_table_lookup_rules():
    """kernels.launch_table.lookup, the one implementation both ops use: classes, buckets, precedence, defaults."""
    table = {
        "buckets": {"n": [16, 256]},
        "defaults": {"gpu": {"x": "gpu default"}},
        "entries": [
            {"device": "gpu", "mode": "*", "n": "*", "x": "any gpu"},
            {"device": ["H100"], "mode": "a", "n": "<=16", "x": "H100 a small"},
            {"device": ["H100"], "mode": "a", "n": ["<=256", ">256"], "x": "H100 a big"},
            {"device": "interpret", "mode": ["a", "b"], "x": "interp"},
        ],
    }
    assert launch_table.lookup(table, "H100", dict(mode="a", n=3)) == (table["entries"][1], "autotune.json entries[1]")
    assert launch_table.lookup(table, "H100", dict(mode="a", n=300))[0]["x"] == "H100 a big"
    assert launch_table.lookup(table, "H100", dict(mode="b", n=3))[0]["x"] == "any gpu"
    assert launch_table.lookup(table, "interpret", dict(mode="b", n=3))[0]["x"] == "interp"
    del table["entries"][0]
    assert launch_table.lookup(table, "A10", dict(mode="a", n=1), "t.json") == (
        {"x": "gpu default"},
        "t.json defaults.gpu",
    )
    with pytest.raises(ValueError, match=r"t.json: no entry matches interpret .*'n': '>256'.* no defaults.interpret"):
        launch_table.lookup(table, "interpret", dict(mode="c", n=1000), "t.json")
    assert [launch_table.bucket(n, [16, 256]) for n in (0, 16, 17, 256, 257)] == [
        "<=16",
        "<=16",
        "<=256",
        "<=256",
        ">256",
    ]


def test_launch_table_load_errors(tmp_path):
    bad = {
        "no entries": {"defaults": {}},
        "buckets": {"buckets": {"seq": [2048, 512]}, "entries": []},
        "defaults": {"defaults": {"cpu": {}}, "entries": []},
    }
    for name, content in bad.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=str(path)):
            launch_table.load_table(path)


def test_short_device_names():
    names = {
        "NVIDIA H100 80GB HBM3": "H100",
        "NVIDIA H100 PCIe": "H100",
        "NVIDIA H200": "H200",
        "NVIDIA GH200 480GB": "GH200",
        "NVIDIA A100-SXM4-80GB": "A100",
        "Tesla V100-SXM2-16GB": "V100",
        "cpu": "cpu",
    }
    for kind, short in names.items():
        assert launch_table.short_device_name(kind) == short


def test_config_merge_and_clamp():
    base = _lookup("H100")
    merged = base.merged({"fwd": {"BLOCK_N": 32}, "bwd_dq": {"num_stages": 2}})
    assert merged.fwd == lc.KernelConfig(128, 32, 8, 3) and merged.bwd_dq.num_stages == 2
    assert merged.bwd_dkv == base.bwd_dkv
    clamped = base.clamped(q_len=20, kv_len=40)
    assert (clamped.fwd.block_m, clamped.fwd.block_n) == (32, 64) and clamped.bwd_dkv.block_n == 64
    resolved = lc.resolve_config(None, head_dim=64, causal=False, dtype=jnp.float32, q_len=8, kv_len=8)
    assert resolved.fwd.block_m == 16 and resolved.bwd_dkv.block_n == 16


def test_checked_in_tables_are_in_the_writers_layout():
    """Both ops' tables load, and are byte for byte what launch_table.format_table writes (what tune.py writes)."""
    from kernels.int8_matmul import launch_config as qlc

    for path in (lc.TABLE_PATH, qlc.TABLE_PATH):
        table = launch_table.load_table(path)
        assert launch_table.format_table(table) == path.read_text(), path
    table = lc.load_table()
    entry = {**table["entries"][1], "device": ["H100"], "seq": "<=8192", "source": "measured by tune.py"}
    merged = launch_table.merge_measured(table, [entry], lc.CLASS_FIELDS)
    assert merged["entries"][-1] == entry and len(merged["entries"]) == len(table["entries"]) + 1
    again = launch_table.merge_measured(merged, [{**entry, "fwd": {**entry["fwd"], "BLOCK_N": 32}}], lc.CLASS_FIELDS)
    assert len(again["entries"]) == len(merged["entries"]) and again["entries"][-1]["fwd"]["BLOCK_N"] == 32


@needs_triton
@pytest.mark.cpu_only("on a GPU this would start the sweep")
def test_tune_refuses_without_gpu(capsys, tmp_path):
    from kernels.attention import tune

    table = tmp_path / "table.json"
    table.write_text(lc.TABLE_PATH.read_text())
    assert tune.main(["--table", str(table)]) == 2
    assert "Nothing was measured" in capsys.readouterr().out
    assert table.read_text() == lc.TABLE_PATH.read_text()


@needs_triton
@pytest.mark.cpu_only("runs the tuner's sweep through Triton's interpreter")
def test_tune_sweep_logic_through_the_interpreter(capsys):
    """tune.tune_class (GPU-only in practice) run on the interpreter with two configs per kernel: a valid entry."""
    from kernels.attention import tune

    grids = {
        "fwd": [lc.KernelConfig(16, 16, 4, 1), lc.KernelConfig(32, 16, 4, 1)],
        "bwd_dkv": [lc.KernelConfig(16, 32, 4, 1), lc.KernelConfig(16, 16, 4, 1)],
        "bwd_dq": [lc.KernelConfig(32, 16, 4, 1), lc.KernelConfig(16, 16, 4, 1)],
    }
    entry = tune.tune_class(
        head_dim=16, causal=True, dtype="float32", seq=32, tokens=32, heads=2, repeats=1, input_sets=2, quick=True,
        backend="interpret", grids=grids,
    )  # fmt: skip
    assert entry["device"] == ["interpret"] and entry["seq"] == "<=512" and entry["source"].startswith("measured")
    for kernel in lc.KERNELS:
        assert lc.KernelConfig.from_json(entry[kernel]) in grids[kernel]
        assert entry["measured"][f"{kernel}_ms"] > 0
    table = launch_table.merge_measured(lc.load_table(), [entry], lc.CLASS_FIELDS)
    assert lc.lookup_config(head_dim=16, causal=True, dtype=jnp.float32, q_len=32, kv_len=32, device="interpret",
                            table=table).source == entry["source"]  # fmt: skip
    assert "fwd 16x16 w4 s1" in capsys.readouterr().out


@needs_triton
def test_hopper_entry_compiles_for_sm90_without_spills():
    """Compile the H100 head_dim-128 bf16 entry for sm_90 offline (ptxas, no GPU): HGMMA, no spills, fits."""
    from kernels.attention import tune

    missing = launch_table.offline_compile_unavailable(("ptxas", "cuobjdump"))
    if missing:
        pytest.skip(missing)
    config = _lookup("H100")
    for kernel in lc.KERNELS:
        r = tune.compile_offline(kernel, getattr(config, kernel), head_dim=128, causal=True, arch=90)
        assert r["stack"] == 0 and r["spill_stores"] == 0, (kernel, r)
        assert r["hgmma"] > 0, (kernel, r)
        assert r["shared"] <= tune.SHARED_MEMORY_LIMIT[90], (kernel, r)
