"""Triton fused attention (Triton's interpreter on CPU) against the plain-jnp reference, forward and dq/dk/dv.

Error metric: max |impl - ref| / max |ref| per output, bounds 1e-5 (float32) and 2e-2 (bfloat16). Every test draws
its own random inputs (seeded by the test id, never zeros); gradients are those of sum(out * random cotangent),
computed under jax.jit. The interpreter runs every program of the grid in Python, so shapes stay tiny; the default
interpreter tiles (fwd 32x16, dK/dV 16x32, dQ 32x16) make them span several tiles with ragged tails.
"""

import numpy as np
import pytest

pytest.importorskip("triton", reason="triton is not installed (pip install -e '.[test]' on Linux)")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from attention_helpers import TOL, qkv, rng_for, run, segments  # noqa: E402

from kernels.attention import reference  # noqa: E402
from kernels.attention import triton as fa  # noqa: E402

SMALL = fa.LaunchConfig(*(fa.KernelConfig(16, 16, 4, 1),) * 3, source="test")  # the most tiles per sequence


def _compare(rng, q, k, v, config=None, tol=None, **kw):
    """Runs both implementations; asserts dtypes, finiteness and the relative error of out, dq, dk, dv."""
    ct = jnp.asarray(rng.standard_normal(q.shape, np.float32))
    got = run(fa.attention, q, k, v, ct, config=config, **kw)
    want = run(reference.attention, q, k, v, ct, **kw)
    tol = TOL[q.dtype.type] if tol is None else tol
    for name, g, w, x in zip(("out", "dq", "dk", "dv"), got, want, (q, q, k, v), strict=True):
        assert g.shape == x.shape and g.dtype == x.dtype, (name, g.shape, g.dtype)
        g, w = np.asarray(g, np.float32), np.asarray(w, np.float32)
        assert np.isfinite(g).all(), name
        scale = np.abs(w).max()
        assert scale > 0, name
        err = np.abs(g - w).max() / scale
        assert err < tol, f"{name}: relative error {err:.2e} >= {tol:.0e}"
    return got, want


# ----------------------------------------------------------------------------------------- core cases
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
def test_plain_and_causal(request, dtype, causal):
    rng = rng_for(request)
    _compare(rng, *qkv(rng, 2, 48, 48, 2, 2, 64, dtype), causal=causal)


def test_float16_and_custom_scale(request):
    rng = rng_for(request)
    _compare(rng, *qkv(rng, 1, 40, 40, 2, 1, 32, jnp.float16), causal=True, scale=0.3)


@pytest.mark.parametrize(
    "dtype,causal,q_len,kv_len",
    [
        (jnp.float32, False, 48, 48),
        (jnp.float32, True, 48, 48),
        (jnp.bfloat16, True, 48, 48),
        (jnp.float32, True, 24, 40),
    ],
)
def test_segment_ids(request, dtype, causal, q_len, kv_len):
    """Separate q/kv ids (different boundaries), each with a padding segment (id 0) at the tail."""
    rng = rng_for(request)
    q, k, v = qkv(rng, 2, q_len, kv_len, 2, 1, 32, dtype)
    q_ids, kv_ids = segments(rng, 2, q_len, pad_id=0), segments(rng, 2, kv_len, pad_id=0)
    n = min(q_len, kv_len)
    assert not np.array_equal(np.asarray(q_ids)[:, :n], np.asarray(kv_ids)[:, :n])
    _compare(rng, q, k, v, causal=causal, q_segment_ids=q_ids, kv_segment_ids=kv_ids)


@pytest.mark.parametrize(
    "dtype,q_heads,kv_heads,causal",
    [(jnp.float32, 4, 2, False), (jnp.float32, 4, 2, True), (jnp.float32, 4, 1, True), (jnp.bfloat16, 4, 1, False)],
)
def test_gqa_mqa(request, dtype, q_heads, kv_heads, causal):
    rng = rng_for(request)
    _compare(rng, *qkv(rng, 1, 40, 40, q_heads, kv_heads, 32, dtype), causal=causal)


@pytest.mark.parametrize(
    "q_len,kv_len,causal",
    [(37, 37, False), (37, 37, True), (20, 45, True), (45, 20, True), (45, 20, False), (17, 48, False)],
)
def test_ragged_lengths(request, q_len, kv_len, causal):
    """Lengths not divisible by the tiles (boundary masks) and Sq != Skv (bottom-right causal alignment)."""
    rng = rng_for(request)
    _compare(rng, *qkv(rng, 1, q_len, kv_len, 2, 1, 32, jnp.float32), causal=causal)


def test_small_tiles_everything(request):
    """16x16 tiles in all kernels with a window, GQA, segment ids and ragged Sq != Skv at once."""
    rng = rng_for(request)
    q, k, v = qkv(rng, 2, 45, 38, 4, 2, 32, jnp.float32)
    ids = dict(q_segment_ids=segments(rng, 2, 45, 0, 2), kv_segment_ids=segments(rng, 2, 38, 0, 2))
    _compare(rng, q, k, v, config=SMALL, causal=True, window=(12, None), **ids)


def test_tiles_larger_than_sequence(request):
    """Table tiles bigger than the sequence are clamped; one tile covers everything."""
    rng = rng_for(request)
    big = {"fwd": {"BLOCK_M": 128, "BLOCK_N": 64}, "bwd_dkv": {"BLOCK_M": 64, "BLOCK_N": 128}}
    _compare(rng, *qkv(rng, 1, 20, 24, 2, 2, 16, jnp.float32), config=big, causal=True)


@pytest.mark.parametrize(
    "dtype,head_dim,seq",
    [(jnp.float32, 64, 32), (jnp.float32, 128, 32), (jnp.bfloat16, 128, 32), (jnp.float32, 256, 16)],
)
def test_head_dims(request, dtype, head_dim, seq):
    rng = rng_for(request)
    _compare(rng, *qkv(rng, 1, seq, seq, 2, 1, head_dim, dtype), causal=True)


def test_head_dim_not_power_of_two(request):
    """head_dim 48 is zero-padded to 64 in the wrapper (exact); the output keeps 48 columns."""
    rng = rng_for(request)
    _compare(rng, *qkv(rng, 1, 24, 24, 2, 1, 48, jnp.float32))


@pytest.mark.parametrize(
    "window,causal,q_len,kv_len",
    [
        ((8, 4), False, 48, 48),
        ((16, None), False, 48, 48),
        ((None, 5), False, 48, 48),
        ((0, 2), False, 48, 48),
        ((8, 4), True, 48, 48),
        ((20, None), True, 48, 48),
        ((6, 3), False, 20, 44),
        ((5, None), True, 44, 20),
    ],
)
def test_sliding_window(request, window, causal, q_len, kv_len):
    rng = rng_for(request)
    _compare(rng, *qkv(rng, 1, q_len, kv_len, 2, 1, 32, jnp.float32), window=window, causal=causal)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_fully_masked_rows(request, dtype):
    """Rows whose segment id no key has, and (q_len > kv_len under causal) rows before the first key."""
    rng = rng_for(request)
    q_len, kv_len = 40, 28
    q, k, v = qkv(rng, 2, q_len, kv_len, 2, 1, 32, dtype)
    q_ids = np.asarray(segments(rng, 2, q_len, pad_id=-1))  # -1: a padding id that no key has
    kv_ids = segments(rng, 2, kv_len, pad_id=0)
    got, want = _compare(rng, q, k, v, causal=True, q_segment_ids=jnp.asarray(q_ids), kv_segment_ids=kv_ids)
    dead = np.asarray(~reference.mask(q_len, kv_len, causal=True, q_segment_ids=q_ids, kv_segment_ids=kv_ids).any(-1))
    assert dead[:, : q_len - kv_len].all() and (q_ids == -1).any() and dead[q_ids == -1].all()
    out, dq = np.asarray(got[0], np.float32), np.asarray(got[1], np.float32)
    assert (out[dead] == 0).all() and (dq[dead] == 0).all()


def test_all_rows_masked(request):
    """Nothing visible anywhere: zeros out, zero (finite) gradients."""
    rng = rng_for(request)
    q, k, v = qkv(rng, 1, 24, 24, 2, 2, 32, jnp.float32)
    ct = jnp.asarray(rng.standard_normal(q.shape, np.float32))
    ids = dict(q_segment_ids=jnp.ones((1, 24), jnp.int32), kv_segment_ids=jnp.zeros((1, 24), jnp.int32))
    for x in run(fa.attention, q, k, v, ct, **ids):
        assert np.isfinite(np.asarray(x)).all() and not np.asarray(x).any()


def test_eager_and_jit_agree(request):
    """Outside jax.jit (eager custom_vjp) the result is the same as under jit."""
    rng = rng_for(request)
    q, k, v = qkv(rng, 1, 20, 20, 2, 1, 16, jnp.float32)
    eager = fa.attention(q, k, v, causal=True)
    jitted = jax.jit(lambda q, k, v: fa.attention(q, k, v, causal=True))(q, k, v)
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(jitted))
    assert np.isfinite(np.asarray(eager)).all()


# ----------------------------------------------------------------------------------------- argument errors
def _x(*shape, dtype=jnp.float32):
    return jnp.ones(shape, dtype)


ERRORS = [
    (dict(q=_x(2, 16, 4)), r"q: expected \[batch, seq, heads, head_dim\]"),
    (dict(k=_x(3, 16, 4, 64)), r"k: expected \[batch, seq, heads, head_dim\] with batch 2 .* got \(3, 16, 4, 64\)"),
    (dict(v=_x(2, 8, 4, 64)), r"v: expected the shape of k"),
    (dict(k=_x(2, 16, 3, 64), v=_x(2, 16, 3, 64)), r"k: expected a number of heads that divides q's 4"),
    (dict(v=_x(2, 16, 4, 64, dtype=jnp.bfloat16)), r"v: expected dtype float32 like q"),
    (dict(q=_x(2, 16, 4, 64, dtype=jnp.int32)), r"q: expected a floating dtype"),
    (dict(q_segment_ids=_x(2, 16, dtype=jnp.int32)), r"kv_segment_ids: .*given together"),
    (
        dict(q_segment_ids=_x(2, 15, dtype=jnp.int32), kv_segment_ids=_x(2, 16, dtype=jnp.int32)),
        r"q_segment_ids: expected shape \[batch, seq\] = \(2, 16\)",
    ),
    (dict(window=(4,)), r"window: expected None or a \(left, right\) pair"),
    (dict(window=(-1, 2)), r"window: left must be a non-negative int"),
    (dict(scale="big"), r"scale: expected a Python float"),
    (dict(q=_x(1, 16, 4, 320), k=_x(1, 16, 4, 320), v=_x(1, 16, 4, 320)), r"q: .*head_dim <= 256, got 320"),
    (dict(backend="cuda"), r"backend: expected 'auto', 'gpu' or 'interpret'"),
    (dict(config={"fwd": {"BLOCK_M": 24}}), r"config.fwd.BLOCK_M: expected a power of two >= 16, got 24"),
    (dict(config={"fwd": {"block_m": 32}}), r"config.fwd: unknown keys \['block_m'\]"),
    (dict(config={"bwd": {}}), r"config: unknown keys \['bwd'\]"),
    (dict(config={"bwd_dq": {"num_warps": 3}}), r"config.bwd_dq.num_warps: expected 1, 2, 4, 8 or 16"),
    (dict(config=[1, 2]), r"config: expected None, a LaunchConfig or a mapping"),
    (dict(config={"fwd": {"num_stages": "3"}}), r"config.fwd.num_stages: expected an int, got '3'"),
]


@pytest.mark.parametrize("override,message", ERRORS)
def test_argument_errors(override, message):
    args = dict(q=_x(2, 16, 4, 64), k=_x(2, 16, 4, 64), v=_x(2, 16, 4, 64)) | override
    with pytest.raises(ValueError, match=message):
        fa.attention(**args)


def test_offset_limit_error():
    """Sequences whose in-sequence offsets would overflow int32 are refused (checked on abstract shapes)."""
    q = jax.ShapeDtypeStruct((1, 2**22, 8, 64), jnp.bfloat16)
    with pytest.raises(ValueError, match=r"q: seq \* heads \* head_dim must be < 2\*\*31"):
        jax.eval_shape(fa.attention, q, q, q)


# ----------------------------------------------------------------------------------------- launch configurations
def _lookup(device, head_dim=128, causal=True, dtype=jnp.bfloat16, seq=4096, table=None):
    return fa.lookup_config(
        head_dim=head_dim, causal=causal, dtype=dtype, q_len=seq, kv_len=seq, device=device, table=table
    )


def test_config_lookup_published_hopper_entries():
    c = _lookup("H100")
    assert (c.fwd.block_m, c.fwd.block_n, c.fwd.num_warps, c.fwd.num_stages) == (128, 64, 8, 3)
    assert c.source == "published, not yet measured here"
    assert _lookup("H200") == c and _lookup("H100", causal=False, dtype=jnp.float16, seq=100) == c
    for head_dim in (64, 128, 256):
        assert _lookup("H100", head_dim=head_dim).source == "published, not yet measured here"
    table = fa.load_table()
    for entry in table["entries"]:  # every published entry says where its numbers come from
        if entry["source"].startswith("published"):
            assert entry["source"] == "published, not yet measured here" and entry.get("ref")


def test_config_lookup_fallbacks():
    table = fa.load_table()
    gpu = fa.LaunchConfig.from_json(table["defaults"]["gpu"])
    interp = fa.LaunchConfig.from_json(table["defaults"]["interpret"])
    assert _lookup("A100") == gpu  # no entry for this GPU
    assert _lookup("H100", head_dim=32) == gpu  # nor for this head dim
    assert _lookup("interpret") == interp and _lookup("interpret", head_dim=256, dtype=jnp.float32) == interp
    fp32 = _lookup("H100", dtype=jnp.float32)  # float32 has its own (small-tile) entries on every GPU
    assert fp32.source.startswith("chosen here for float32") and fp32 == _lookup("A100", dtype=jnp.float32)
    assert _lookup("A100", dtype=jnp.float32, head_dim=64).fwd == fa.KernelConfig(32, 32, 8, 1)
    assert _lookup("A100", head_dim=256).source.startswith("chosen here for head_dim 256")
    assert fa.device_key() == "interpret"  # CPU test machine


def test_config_lookup_specificity_and_buckets():
    table = fa.load_table()
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
    assert _lookup("H100", seq=4096, table=table).fwd == fa.KernelConfig(64, 128, 4, 4)  # more specific wins
    assert _lookup("H100", seq=8192, table=table).source == "measured by a test"
    assert _lookup("H100", seq=8193, table=table).source.startswith("published")  # other bucket
    assert _lookup("H100", causal=False, table=table).source.startswith("published")
    assert _lookup("H200", table=table).source.startswith("published")
    assert [fa.seq_bucket(n, 1) for n in (1, 512, 513, 2048, 8192, 32768, 32769)] == [
        "<=512", "<=512", "<=2048", "<=2048", "<=8192", "<=32768", ">32768"
    ]  # fmt: skip
    assert fa.seq_bucket(100, 3000) == "<=8192"


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
        assert fa.short_device_name(kind) == short


def test_config_merge_and_clamp():
    base = _lookup("H100")
    merged = base.merged({"fwd": {"BLOCK_N": 32}, "bwd_dq": {"num_stages": 2}})
    assert merged.fwd == fa.KernelConfig(128, 32, 8, 3) and merged.bwd_dq.num_stages == 2
    assert merged.bwd_dkv == base.bwd_dkv
    clamped = base.clamped(q_len=20, kv_len=40)
    assert (clamped.fwd.block_m, clamped.fwd.block_n) == (32, 64) and clamped.bwd_dkv.block_n == 64
    resolved = fa.resolve_config(None, head_dim=64, causal=False, dtype=jnp.float32, q_len=8, kv_len=8)
    assert resolved.fwd.block_m == 16 and resolved.bwd_dkv.block_n == 16


def test_tune_refuses_without_gpu(capsys, tmp_path):
    from kernels.attention import tune

    table = tmp_path / "table.json"
    table.write_text(fa.TABLE_PATH.read_text())
    assert tune.main(["--table", str(table)]) == 2
    assert "Nothing was measured" in capsys.readouterr().out
    assert table.read_text() == fa.TABLE_PATH.read_text()


def test_tune_table_format_roundtrip():
    from kernels.attention import tune

    table = fa.load_table()
    assert tune.format_table(table) == fa.TABLE_PATH.read_text()  # the checked-in file is in the tool's layout
    entry = {**table["entries"][1], "device": ["H100"], "seq": "<=8192", "source": "measured by tune.py"}
    merged = tune.merge_measured(table, [entry])
    assert merged["entries"][-1] == entry and len(merged["entries"]) == len(table["entries"]) + 1
    again = tune.merge_measured(merged, [{**entry, "fwd": {**entry["fwd"], "BLOCK_N": 32}}])
    assert len(again["entries"]) == len(merged["entries"]) and again["entries"][-1]["fwd"]["BLOCK_N"] == 32


def test_tune_sweep_logic_through_the_interpreter(capsys):
    """tune.tune_class (GPU-only in practice) run on the interpreter with two configs per kernel: a valid entry."""
    from kernels.attention import tune

    grids = {
        "fwd": [fa.KernelConfig(16, 16, 4, 1), fa.KernelConfig(32, 16, 4, 1)],
        "bwd_dkv": [fa.KernelConfig(16, 32, 4, 1), fa.KernelConfig(16, 16, 4, 1)],
        "bwd_dq": [fa.KernelConfig(32, 16, 4, 1), fa.KernelConfig(16, 16, 4, 1)],
    }
    entry = tune.tune_class(
        head_dim=16, causal=True, dtype="float32", seq=32, tokens=32, heads=2, repeats=1, input_sets=2, quick=True,
        backend="interpret", grids=grids,
    )  # fmt: skip
    assert entry["device"] == ["interpret"] and entry["seq"] == "<=512" and entry["source"].startswith("measured")
    for kernel in fa.KERNELS:
        assert fa.KernelConfig.from_json(entry[kernel]) in grids[kernel]
        assert entry["measured"][f"{kernel}_ms"] > 0
    table = tune.merge_measured(fa.load_table(), [entry])
    assert fa.lookup_config(head_dim=16, causal=True, dtype=jnp.float32, q_len=32, kv_len=32, device="interpret",
                            table=table).source == entry["source"]  # fmt: skip
    assert "fwd 16x16 w4 s1" in capsys.readouterr().out


def test_hopper_entry_compiles_for_sm90_without_spills():
    """Compile the H100 head_dim-128 bf16 entry for sm_90 offline (ptxas, no GPU): HGMMA, no spills, fits."""
    from kernels.attention import tune

    try:
        from triton.backends.nvidia import compiler  # noqa: F401
    except ImportError:
        pytest.skip("Triton's NVIDIA backend is not installed")
    config = _lookup("H100")
    for kernel in fa.KERNELS:
        try:
            r = tune.compile_offline(kernel, getattr(config, kernel), head_dim=128, causal=True, arch=90)
        except (FileNotFoundError, RuntimeError) as e:  # no ptxas/cuobjdump in this Triton build
            pytest.skip(f"offline compilation unavailable: {e}")
        assert r["stack"] == 0 and r["spill_stores"] == 0, (kernel, r)
        assert r["hgmma"] > 0, (kernel, r)
        assert r["shared"] <= tune.SHARED_MEMORY_LIMIT[90], (kernel, r)


# ----------------------------------------------------------------------------------------- GPU (jax-triton)
GPU_CASES = [
    dict(shape=(2, 1024, 8, 8, 128), causal=False),
    dict(shape=(2, 1024, 8, 8, 128), causal=True),
    dict(shape=(1, 2048, 8, 2, 64), causal=True, window=(256, None)),
    dict(shape=(2, 1000, 4, 1, 256), causal=True, segments=True),
    dict(shape=(1, 777, 4, 2, 128), causal=True, kv_len=1333),
]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_gpu_against_reference(request, dtype, case):
    """jax-triton path with the table's configs on bigger shapes, forward and gradients."""
    case = dict(case)
    batch, q_len, q_heads, kv_heads, head_dim = case.pop("shape")
    kv_len = case.pop("kv_len", q_len)
    rng = rng_for(request)
    q, k, v = qkv(rng, batch, q_len, kv_len, q_heads, kv_heads, head_dim, dtype)
    if case.pop("segments", False):
        case.update(q_segment_ids=segments(rng, batch, q_len, 0, 4), kv_segment_ids=segments(rng, batch, kv_len, 0, 4))
    # float32: 1e-4 rather than 1e-5, for reductions over ~1000 keys/queries in a different order than XLA's.
    _compare(rng, q, k, v, tol=1e-4 if dtype == jnp.float32 else None, **case)
