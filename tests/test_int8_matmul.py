"""kernels.int8_matmul: the jnp reference against numpy int64 / float64 math, quantization error bounds, int4
packing, every Triton and Pallas kernel against the reference on shapes that are not multiples of the blocks
(prefill-like and decode M = 1, 16), the launch table, and the api (dispatch, logged fallback, argument errors,
leading dims and gradients against independent numpy math). On CPU the kernels run interpreted (Triton's
interpreter, Pallas interpret mode); with JAXDL_TEST_BACKEND=gpu the same tests launch them compiled."""

import collections
import importlib.util
import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels import launch_table
from kernels.int8_matmul import api, pallas, reference
from kernels.int8_matmul import launch_config as qlc

pytestmark = pytest.mark.portable
ON_GPU = jax.default_backend() == "gpu"
DEBUG = not ON_GPU  # interpreter: poison unwritten outputs (on a GPU, debug=True would print Triton's IRs)
HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (pip install -e '.[test]' on Linux)")

# (M, K, N): M, K, N not multiples of the interpreter's 16 x 16 x 32 blocks; decode rows M = 1 and 16 (split-K).
SHAPES = [(33, 100, 40), (1, 96, 40), (16, 72, 24)]
# (M, K, N, group_size) for W4A16 (K a multiple of group_size; group 64 = two 32-wide K tiles per group).
INT4_SHAPES = [(33, 96, 40, 32), (1, 128, 40, 64), (16, 128, 24, 64)]
TOL = {jnp.float32: 1e-5, jnp.bfloat16: 2e-2}


def _rel_err(out, ref) -> float:
    """max |out - ref| / max |ref| in float64 (NaN when out has NaNs: unwritten elements never pass)."""
    out = np.asarray(jnp.asarray(out, jnp.float32), np.float64)
    ref = np.asarray(jnp.asarray(ref, jnp.float32), np.float64)
    assert out.shape == ref.shape
    if np.isnan(out).any():
        return float("nan")
    return float(np.max(np.abs(out - ref)) / max(np.max(np.abs(ref)), 1e-30))


def _data(m, k, n, seed=0, dtype=jnp.float32):
    kx, kw = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(kx, (m, k), jnp.float32)
    w = jax.random.normal(kw, (k, n), jnp.float32) * 0.1
    return x.astype(dtype), w


def _np_quantize(a, axis):
    """Symmetric abs-max int8 quantization along ``axis`` in numpy, from the definition (float32 arithmetic):
    scale = max|a| / 127 (1 where all zero), q = clip(round_half_even(a / scale), -127, 127)."""
    a = np.asarray(jnp.asarray(a, jnp.float32))
    amax = np.abs(a).max(axis=axis, keepdims=True)
    scale = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
    return np.clip(np.rint(a / scale), -127, 127).astype(np.int64), scale.astype(np.float64)


def _np_w8a8(x, w_q, w_scale):
    """float64 numpy W8A8: per-token quantization of x, exact integer matmul, both scales."""
    x_q, x_scale = _np_quantize(x, axis=-1)
    acc = x_q @ np.asarray(w_q, np.int64)
    return acc * x_scale * np.asarray(w_scale, np.float64)


def _np_dequant8(w_q, w_scale):
    return np.asarray(w_q, np.float64) * np.asarray(w_scale, np.float64)


def _np_dequant4(w_packed, scales, group_size):
    q = np.asarray(reference.unpack_int4(w_packed), np.float64)  # layout checked in test_int4_pack_unpack_...
    return q * np.repeat(np.asarray(scales, np.float64), group_size, axis=0)


def _w8(m, k, n, seed=0):
    x, w = _data(m, k, n, seed)
    x_q, x_scale = reference.quantize_per_token(x)
    w_q, w_scale = reference.quantize_per_channel(w)
    return x_q, x_scale, w_q, w_scale


# ===============================================================================================================
# Reference
# ===============================================================================================================


def test_w8a8_reference_integer_part_is_exact_numpy_int64():
    rng = np.random.default_rng(1)
    m, k, n = 7, 300, 11
    x_q = rng.integers(-128, 128, (m, k), dtype=np.int8)  # the full int8 range, -128 included
    w_q = rng.integers(-128, 128, (k, n), dtype=np.int8)
    ones_m, ones_n = jnp.ones((m, 1), jnp.float32), jnp.ones((1, n), jnp.float32)
    acc = reference.w8a8(jnp.asarray(x_q), ones_m, jnp.asarray(w_q), ones_n, jnp.float32)
    exact = x_q.astype(np.int64) @ w_q.astype(np.int64)  # |acc| <= 128² * 300 < 2**24: exact in float32
    np.testing.assert_array_equal(np.asarray(acc, np.int64), exact)
    # Dequantization: float32 (acc * x_scale) * w_scale against float64.
    x_scale = rng.uniform(0.001, 0.1, (m, 1)).astype(np.float32)
    w_scale = rng.uniform(0.001, 0.1, (1, n)).astype(np.float32)
    out = reference.w8a8(jnp.asarray(x_q), jnp.asarray(x_scale), jnp.asarray(w_q), jnp.asarray(w_scale), jnp.float32)
    np.testing.assert_allclose(out, exact * x_scale.astype(np.float64) * w_scale, rtol=2e-7)


def test_quantize_per_token_and_channel_round_trip_bounds():
    x, w = _data(9, 64, 12, seed=2)
    x = x.at[3].set(0.0)  # an all-zero row: scale 1, values 0 (no division by zero)
    x_q, x_scale = reference.quantize_per_token(x)
    assert x_q.dtype == jnp.int8 and x_scale.dtype == jnp.float32 and x_scale.shape == (9, 1)
    assert float(x_scale[3, 0]) == 1.0 and not np.asarray(x_q[3]).any()
    err = np.abs(np.asarray(reference.dequantize_per_token(x_q, x_scale)) - np.asarray(x))
    assert np.all(err <= 0.5 * np.asarray(x_scale) * (1 + 1e-6))  # round to nearest: half a step
    amax = np.max(np.abs(np.asarray(x_q, np.int32)), axis=1)
    assert np.all(amax[np.arange(9) != 3] == 127) and np.asarray(x_q).min() >= -127

    w_q, w_scale = reference.quantize_per_channel(w)
    assert w_q.dtype == jnp.int8 and w_scale.shape == (1, 12)
    err = np.abs(np.asarray(reference.dequantize_per_channel(w_q, w_scale)) - np.asarray(w))
    assert np.all(err <= 0.5 * np.asarray(w_scale) * (1 + 1e-6))
    assert np.all(np.max(np.abs(np.asarray(w_q, np.int32)), axis=0) == 127)
    # bf16 activations quantize from their exact float32 values; leading dims are kept.
    xb = x.astype(jnp.bfloat16).reshape(3, 3, 64)
    qb, sb = reference.quantize_per_token(xb)
    assert qb.shape == (3, 3, 64) and sb.shape == (3, 3, 1)


def test_int4_pack_unpack_round_trip_and_layout():
    rng = np.random.default_rng(3)
    q = rng.integers(-8, 8, (64, 10), dtype=np.int8)  # every int4 value
    packed = reference.pack_int4(jnp.asarray(q))
    assert packed.dtype == jnp.uint8 and packed.shape == (32, 10)
    np.testing.assert_array_equal(reference.unpack_int4(packed), q)
    # Layout: low nibble = even k, high nibble = odd k, two's complement.
    two = reference.pack_int4(jnp.asarray([[1], [-2]], jnp.int8))
    assert int(two[0, 0]) == 0xE1
    np.testing.assert_array_equal(reference.unpack_int4(jnp.asarray([[0x8F]], jnp.uint8)), [[-1], [-8]])


def test_quantize_int4_round_trip_bound():
    _, w = _data(1, 128, 24, seed=4)
    w_packed, scales = reference.quantize_int4(w, group_size=32)
    assert w_packed.shape == (64, 24) and scales.shape == (4, 24) and scales.dtype == jnp.float32
    q = np.asarray(reference.unpack_int4(w_packed), np.int32)
    assert q.min() >= -7 and q.max() <= 7
    deq = np.asarray(reference.dequantize_int4(w_packed, scales, 32))
    step = np.repeat(np.asarray(scales), 32, axis=0)
    assert np.all(np.abs(deq - np.asarray(w)) <= 0.5 * step * (1 + 1e-6))


def test_weight_only_references_match_float64():
    x, w = _data(5, 96, 16, seed=5)
    w_q, w_scale = reference.quantize_per_channel(w)
    ref64 = np.asarray(x, np.float64) @ (np.asarray(w_q, np.float64) * np.asarray(w_scale, np.float64))
    assert _rel_err(reference.w8a16(x, w_q, w_scale), ref64) < 1e-6
    w_packed, scales = reference.quantize_int4(w, group_size=32)
    deq64 = np.asarray(reference.dequantize_int4(w_packed, scales, 32), np.float64)
    assert _rel_err(reference.w4a16(x, w_packed, scales, 32), np.asarray(x, np.float64) @ deq64) < 1e-6


def test_w8a8_close_to_float_matmul_within_quantization_error():
    x, w = _data(17, 128, 24, seed=6)
    x_q, x_scale, w_q, w_scale = (*reference.quantize_per_token(x), *reference.quantize_per_channel(w))
    out = np.asarray(reference.w8a8(x_q, x_scale, w_q, w_scale, jnp.float32), np.float64)
    exact = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
    # |x w - x̂ ŵ| <= sum_k |x| dw + |w| dx + dx dw with dx <= x_scale / 2, dw <= w_scale / 2.
    dx, dw = np.asarray(x_scale, np.float64) / 2, np.asarray(w_scale, np.float64) / 2
    ax, aw = np.abs(np.asarray(x, np.float64)), np.abs(np.asarray(w, np.float64))
    bound = ax.sum(1, keepdims=True) * dw + dx * aw.sum(0, keepdims=True) + 128 * dx * dw
    assert np.all(np.abs(out - exact) <= bound * (1 + 1e-5) + 1e-6)
    assert _rel_err(out, exact) < 0.03  # and the typical error is small


# ===============================================================================================================
# Triton kernels (Triton's interpreter on CPU)
# ===============================================================================================================


@needs_triton
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_triton_w8a8_matches_reference(m, k, n):
    from kernels.int8_matmul import triton as tk

    x_q, x_scale, w_q, w_scale = _w8(m, k, n, seed=m)
    # Integer part: unit scales, float32 out -> the int32 accumulation itself, exactly.
    ones_m, ones_n = jnp.ones((m, 1), jnp.float32), jnp.ones((1, n), jnp.float32)
    acc = tk.w8a8(x_q, ones_m, w_q, ones_n, jnp.float32, debug=DEBUG)
    np.testing.assert_array_equal(np.asarray(acc), np.asarray(x_q, np.int64) @ np.asarray(w_q, np.int64))
    for out_dtype in (jnp.float32, jnp.bfloat16):
        out = tk.w8a8(x_q, x_scale, w_q, w_scale, out_dtype, debug=DEBUG)
        ref = reference.w8a8(x_q, x_scale, w_q, w_scale, out_dtype)
        assert out.dtype == out_dtype and out.shape == (m, n)
        assert _rel_err(out, ref) <= (1e-6 if out_dtype == jnp.float32 else 2e-2)


@needs_triton
@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_triton_w8a16_matches_reference(m, k, n, dtype):
    from kernels.int8_matmul import triton as tk

    x, w = _data(m, k, n, seed=m + 1, dtype=dtype)
    w_q, w_scale = reference.quantize_per_channel(w)
    out = tk.w8a16(x, w_q, w_scale, debug=DEBUG)
    assert out.dtype == dtype and out.shape == (m, n)
    assert _rel_err(out, reference.w8a16(x, w_q, w_scale)) <= TOL[dtype]


@needs_triton
@pytest.mark.parametrize("m,k,n,group_size", INT4_SHAPES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_triton_w4a16_matches_reference(m, k, n, group_size, dtype):
    from kernels.int8_matmul import triton as tk

    x, w = _data(m, k, n, seed=m + 2, dtype=dtype)
    w_packed, scales = reference.quantize_int4(w, group_size)
    out = tk.w4a16(x, w_packed, scales, group_size, debug=DEBUG)
    assert out.dtype == dtype and out.shape == (m, n)
    assert _rel_err(out, reference.w4a16(x, w_packed, scales, group_size)) <= TOL[dtype]


@needs_triton
def test_triton_split_k_is_deterministic_and_exact_for_w8a8():
    from kernels.int8_matmul import triton as tk

    x_q, x_scale, w_q, w_scale = _w8(20, 160, 24, seed=7)
    outs = [tk.w8a8(x_q, x_scale, w_q, w_scale, jnp.float32, config={"SPLIT_K": s}, debug=DEBUG) for s in (1, 3)]
    np.testing.assert_array_equal(outs[0], outs[1])  # int32 partial sums add exactly
    x, w = _data(20, 160, 24, seed=8)
    wq, ws = reference.quantize_per_channel(w)
    out = tk.w8a16(x, wq, ws, config={"SPLIT_K": 3, "BLOCK_K": 16, "BLOCK_N": 32}, debug=DEBUG)
    assert _rel_err(out, reference.w8a16(x, wq, ws)) <= 1e-5


@needs_triton
def test_triton_under_jit():
    from kernels.int8_matmul import triton as tk

    x, w = _data(5, 64, 24, seed=9, dtype=jnp.bfloat16)
    w_packed, scales = reference.quantize_int4(w, 32)
    out = jax.jit(lambda x: tk.w4a16(x, w_packed, scales, 32))(x)
    assert _rel_err(out, reference.w4a16(x, w_packed, scales, 32)) <= 2e-2


def test_launch_table():
    table = qlc.load_table()
    for i, entry in enumerate(table["entries"]):
        qlc.MatmulConfig.from_entry(entry, f"entries[{i}]")
        if entry["device"] != "interpret":
            assert entry["source"] == "published/heuristic, not yet measured here" and entry.get("ref")
    for cls in ("gpu", "interpret"):
        qlc.MatmulConfig.from_entry(table["defaults"][cls], f"defaults.{cls}")
    assert [qlc.m_bucket(m) for m in (1, 2, 16, 64, 65, 256, 4096)] == [
        "<=1", "<=16", "<=16", "<=64", "<=256", "<=256", ">256"
    ]  # fmt: skip
    decode = qlc.lookup_config("w4a16", 16, device="H100")
    assert (decode.block_m, decode.block_n, decode.block_k, decode.split_k) == (16, 32, 128, 4)
    assert decode.source == "published/heuristic, not yet measured here"
    assert qlc.lookup_config("w8a8", 4096, device="H200").block_n == 256
    assert qlc.lookup_config("w8a16", 1, device="interpret").split_k == 2
    assert qlc.lookup_config("w8a16", 100, device="interpret").split_k == 1
    fallback = qlc.lookup_config("w8a16", 1, device="A10")
    assert fallback.source.startswith("conservative fallback") and fallback.block_m == 64
    with pytest.raises(ValueError, match="mode"):
        qlc.lookup_config("w2a2", 1, device="H100")
    with pytest.raises(ValueError, match="BLOCK_K"):
        qlc.MatmulConfig(16, 16, 24).check()
    with pytest.raises(ValueError, match=r"config: unknown keys \['BLOCK'\]"):
        qlc.resolve_config("w8a8", 4, {"BLOCK": 32}, backend="interpret")
    with pytest.raises(ValueError, match=r"entries\[0\].config.SPLIT_K: expected an int, got '2'"):
        qlc.MatmulConfig.from_entry({"config": {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": "2"}},
                                    "entries[0]")  # fmt: skip
    json.dumps(decode.to_json())


@needs_triton
def test_hopper_table_entries_compile_for_sm90():
    """Every Hopper entry compiles (no GPU needed) to a cubin that fits shared memory, keeps its registers (no
    local memory), pipelines its loads (cp.async) and, for 64-row tiles, uses the Hopper tensor-core instruction."""
    from kernels.int8_matmul import triton as tk

    missing = launch_table.offline_compile_unavailable(("ptxas",))
    if missing:  # only an absent compiler skips; any compile error fails the test
        pytest.skip(missing)
    hopper = [e for e in qlc.load_table()["entries"] if isinstance(e["device"], list) and "H100" in e["device"]]
    assert {e["mode"] for e in hopper} == set(qlc.MODES)
    for entry in hopper:
        cfg = qlc.MatmulConfig.from_entry(entry)
        compiled = tk.compile_config(entry["mode"], cfg, jnp.bfloat16)
        ptx = compiled.asm["ptx"]
        where = f"{entry['mode']} m={entry['m']}"
        assert compiled.asm.get("cubin"), where
        assert compiled.metadata.shared <= 227 * 1024, where
        assert ".local" not in ptx, where
        assert "cp.async" in ptx, where
        assert ("wgmma.mma_async" in ptx) == (cfg.block_m >= 64), where


# ===============================================================================================================
# Pallas kernels (interpret mode on CPU)
# ===============================================================================================================

BLOCKS = dict(block_m=16, block_n=16, block_k=32)  # several tiles in every dimension of the test shapes


@pytest.mark.parametrize("m,k,n", SHAPES)
def test_pallas_w8a8_matches_reference(m, k, n):
    x_q, x_scale, w_q, w_scale = _w8(m, k, n, seed=m + 3)
    ones_m, ones_n = jnp.ones((m, 1), jnp.float32), jnp.ones((1, n), jnp.float32)
    acc = pallas.w8a8(x_q, ones_m, w_q, ones_n, jnp.float32, **BLOCKS)
    np.testing.assert_array_equal(np.asarray(acc), np.asarray(x_q, np.int64) @ np.asarray(w_q, np.int64))
    for out_dtype in (jnp.float32, jnp.bfloat16):
        out = pallas.w8a8(x_q, x_scale, w_q, w_scale, out_dtype, **BLOCKS)
        ref = reference.w8a8(x_q, x_scale, w_q, w_scale, out_dtype)
        assert out.dtype == out_dtype and out.shape == (m, n)
        assert _rel_err(out, ref) <= (1e-6 if out_dtype == jnp.float32 else 2e-2)


@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_pallas_w8a16_matches_reference(m, k, n, dtype):
    x, w = _data(m, k, n, seed=m + 4, dtype=dtype)
    w_q, w_scale = reference.quantize_per_channel(w)
    out = pallas.w8a16(x, w_q, w_scale, **BLOCKS)
    assert out.dtype == dtype and out.shape == (m, n)
    assert _rel_err(out, reference.w8a16(x, w_q, w_scale)) <= TOL[dtype]


@pytest.mark.parametrize("m,k,n,group_size", INT4_SHAPES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_pallas_w4a16_matches_reference(m, k, n, group_size, dtype):
    x, w = _data(m, k, n, seed=m + 5, dtype=dtype)
    w_packed, scales = reference.quantize_int4(w, group_size)
    out = pallas.w4a16(x, w_packed, scales, group_size, **BLOCKS)
    assert out.dtype == dtype and out.shape == (m, n)
    assert _rel_err(out, reference.w4a16(x, w_packed, scales, group_size)) <= TOL[dtype]


def test_pallas_default_blocks():
    x, w = _data(33, 96, 40, seed=10)
    w_q, w_scale = reference.quantize_per_channel(w)
    assert _rel_err(pallas.w8a16(x, w_q, w_scale), reference.w8a16(x, w_q, w_scale)) <= 1e-5
    with pytest.raises(ValueError, match="block_m"):
        pallas.w8a16(x, w_q, w_scale, block_m=24)


# ===============================================================================================================
# api
# ===============================================================================================================


def _count_triton_launches(monkeypatch) -> collections.Counter:
    """Counts, by kernel name, the launches `kernels.int8_matmul.triton` traces from now on."""
    from kernels.int8_matmul import triton as tk

    counts: collections.Counter = collections.Counter()
    real = tk.triton_call

    def triton_call(*args, name="", **kwargs):
        counts[name] += 1
        return real(*args, name=name, **kwargs)

    monkeypatch.setattr(tk, "triton_call", triton_call)
    return counts


@pytest.mark.cpu_only("asserts what impl='auto' picks on a CPU backend")
def test_auto_on_cpu_uses_xla_and_logs_why_once(caplog, monkeypatch):
    x, w = _data(4, 64, 8, seed=11)
    w_q, w_scale = reference.quantize_per_channel(w)
    launches = _count_triton_launches(monkeypatch) if HAS_TRITON else collections.Counter()
    api._log_once.cache_clear()
    with caplog.at_level(logging.INFO, logger="kernels.int8_matmul.api"):
        out = api.w8a16_matmul(x, w_q, w_scale)
        api.w8a16_matmul(x, w_q, w_scale)
    assert caplog.text.count("auto on cpu: xla") == 1
    assert not launches  # no kernel ran
    want = np.asarray(x, np.float64) @ _np_dequant8(w_q, w_scale)
    assert _rel_err(out, want) <= 1e-6
    assert api.choose("auto")[0] == "xla" and api.choose("pallas") == ("pallas", None)


def test_auto_on_gpu_prefers_triton_and_says_why_not(monkeypatch):
    monkeypatch.setattr(api.jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(api, "_has_jax_triton", lambda: True)
    assert api.choose("auto") == ("triton", None)
    monkeypatch.setattr(api, "_has_jax_triton", lambda: False)
    name, reason = api.choose("auto")
    assert name == "xla" and "jax-triton is not installed" in reason


@pytest.mark.gpu
def test_gpu_auto_runs_the_triton_kernels(monkeypatch):
    """On a GPU with jax-triton, impl="auto" launches our Triton kernels (counted) and gets the numpy result."""
    pytest.importorskip("jax_triton", reason="impl='auto' picks the Triton kernels only with jax-triton installed")
    launches = _count_triton_launches(monkeypatch)
    x, w = _data(64, 512, 256, seed=16, dtype=jnp.bfloat16)
    w_q, w_scale = reference.quantize_per_channel(w)
    w_packed, scales = reference.quantize_int4(w, 128)
    out8 = api.w8a8_matmul(x, w_q, w_scale)
    out16 = api.w8a16_matmul(x, w_q, w_scale)
    out4 = api.w4a16_matmul(x, w_packed, scales, group_size=128)
    assert {k.removesuffix("_splitk") for k in launches} == {"w8a8_matmul", "w8a16_matmul", "w4a16_matmul"}
    x64 = np.asarray(jnp.asarray(x, jnp.float32), np.float64)
    assert _rel_err(out8, _np_w8a8(x, w_q, w_scale)) <= 2e-2
    assert _rel_err(out16, x64 @ _np_dequant8(w_q, w_scale)) <= 2e-2
    assert _rel_err(out4, x64 @ _np_dequant4(w_packed, scales, 128)) <= 2e-2


IMPLS = ["xla", "pallas", pytest.param("triton", marks=needs_triton)]


@pytest.mark.parametrize("impl", IMPLS)
def test_api_matches_numpy_with_leading_dims(impl):
    """Every impl against float64 numpy math written from the definitions (not against reference.py, which IS the
    xla impl)."""
    x, w = _data(6, 64, 24, seed=12, dtype=jnp.bfloat16)
    x3 = x.reshape(2, 3, 64)
    w_q, w_scale = reference.quantize_per_channel(w)
    w_packed, scales = reference.quantize_int4(w, 32)
    x64 = np.asarray(jnp.asarray(x, jnp.float32), np.float64)

    w8a8 = _np_w8a8(x, w_q, w_scale)
    out = api.w8a8_matmul(x3, w_q, w_scale, impl=impl)
    assert out.shape == (2, 3, 24) and out.dtype == jnp.bfloat16
    assert _rel_err(out.reshape(6, 24), w8a8) <= 2e-2
    out32 = api.w8a8_matmul(x3, w_q, w_scale, impl=impl, out_dtype=jnp.float32)
    assert out32.dtype == jnp.float32
    assert _rel_err(out32.reshape(6, 24), w8a8) <= 1e-6

    out = api.w8a16_matmul(x3, w_q, w_scale, impl=impl)
    assert out.shape == (2, 3, 24) and out.dtype == jnp.bfloat16
    assert _rel_err(out.reshape(6, 24), x64 @ _np_dequant8(w_q, w_scale)) <= 2e-2
    out = api.w4a16_matmul(x3, w_packed, scales, group_size=32, impl=impl)
    assert out.shape == (2, 3, 24) and out.dtype == jnp.bfloat16
    assert _rel_err(out.reshape(6, 24), x64 @ _np_dequant4(w_packed, scales, 32)) <= 2e-2
    # A single vector [K] -> [N].
    vec = api.w8a16_matmul(x[0], w_q, w_scale, impl=impl)
    assert vec.shape == (24,) and _rel_err(vec, x64[0] @ _np_dequant8(w_q, w_scale)) <= 2e-2


@pytest.mark.parametrize("impl", IMPLS)
def test_api_gradients(impl):
    """d/dx and d/dscale of sum(out * g) against the closed forms in float64 numpy."""
    x, w = _data(3, 64, 16, seed=13)
    w_q, w_scale = reference.quantize_per_channel(w)
    w_packed, scales = reference.quantize_int4(w, 32)
    g = jax.random.normal(jax.random.key(14), (3, 16))
    g64, x64 = np.asarray(g, np.float64), np.asarray(x, np.float64)

    def loss8(x, s):
        return jnp.sum(api.w8a16_matmul(x, w_q, s, impl=impl) * g)

    def loss4(x, s):
        return jnp.sum(api.w4a16_matmul(x, w_packed, s, group_size=32, impl=impl) * g)

    dx, ds = jax.grad(loss8, argnums=(0, 1))(x, w_scale)
    np.testing.assert_allclose(dx, g64 @ _np_dequant8(w_q, w_scale).T, rtol=1e-5, atol=1e-6)
    acc = x64 @ np.asarray(w_q, np.float64)
    np.testing.assert_allclose(ds, np.sum(acc * g64, 0, keepdims=True), rtol=1e-5, atol=1e-5)
    dx4, ds4 = jax.grad(loss4, argnums=(0, 1))(x, scales)
    np.testing.assert_allclose(dx4, g64 @ _np_dequant4(w_packed, scales, 32).T, rtol=1e-5, atol=1e-6)
    q4 = np.asarray(reference.unpack_int4(w_packed), np.float64)  # [K, N]
    part = np.einsum("mgk,gkn->mgn", x64.reshape(3, 2, 32), q4.reshape(2, 32, 16))  # per-group partial products
    np.testing.assert_allclose(ds4, np.einsum("mgn,mn->gn", part, g64), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="w8a8_matmul is inference-only"):
        jax.grad(lambda x: jnp.sum(api.w8a8_matmul(x, w_q, w_scale, impl=impl)))(x)


def test_api_argument_errors_name_the_argument():
    x, w = _data(4, 256, 256, seed=15)
    w_q, w_scale = reference.quantize_per_channel(w)
    w_packed, scales = reference.quantize_int4(w, 128)
    with pytest.raises(ValueError, match=r"^w_scale: expected shape \(1, 256\), got \(256,\)$"):
        api.w8a8_matmul(x, w_q, w_scale[0])
    with pytest.raises(TypeError, match="^w_scale: expected a floating dtype"):
        api.w8a16_matmul(x, w_q, w_scale.astype(jnp.int32))
    with pytest.raises(TypeError, match="^w_q: expected dtype int8, got float32"):
        api.w8a16_matmul(x, w, w_scale)
    with pytest.raises(ValueError, match=r"^w_q: expected shape \(128, N\)"):
        api.w8a16_matmul(x[:, :128], w_q, w_scale)
    with pytest.raises(TypeError, match="^x: expected dtype in"):
        api.w8a16_matmul(x.astype(jnp.int32), w_q, w_scale)
    with pytest.raises(TypeError, match="^out_dtype: "):
        api.w8a8_matmul(x, w_q, w_scale, out_dtype=jnp.int32)
    with pytest.raises(ValueError, match="^group_size: must divide K = 256, got 96"):
        api.w4a16_matmul(x, w_packed, scales, group_size=96)
    with pytest.raises(ValueError, match=r"^scales: expected shape \(4, 256\), got \(2, 256\)"):
        api.w4a16_matmul(x, w_packed, scales, group_size=64)
    with pytest.raises(TypeError, match="^w_packed: expected dtype uint8"):
        api.w4a16_matmul(x, w_packed.astype(jnp.int8), scales, group_size=128)
    with pytest.raises(ValueError, match=r"^w_packed: expected shape \(128, N\)"):
        api.w4a16_matmul(x, w_packed[:64], scales, group_size=128)
    with pytest.raises(ValueError, match="impl='cuda'"):
        api.w8a16_matmul(x, w_q, w_scale, impl="cuda")


# ===============================================================================================================
# GPU (skipped without one): the kernels compiled for the GPU (jax-triton; Pallas' Triton backend), LLM-sized
# ===============================================================================================================


@pytest.mark.gpu
@pytest.mark.parametrize("m", [1, 16, 64, 512])
def test_gpu_kernels_match_reference(m):
    pytest.importorskip("jax_triton", reason="the GPU path needs jax-triton (pip install -e '.[gpu]')")
    from kernels.int8_matmul import triton as tk

    k, n = 4096, 4096
    x, w = _data(m, k, n, seed=m, dtype=jnp.bfloat16)
    w_q, w_scale = reference.quantize_per_channel(w)
    x_q, x_scale = reference.quantize_per_token(x)
    w_packed, scales = reference.quantize_int4(w, 128)
    for out_dtype in (jnp.float32, jnp.bfloat16):
        out = tk.w8a8(x_q, x_scale, w_q, w_scale, out_dtype)
        assert _rel_err(out, reference.w8a8(x_q, x_scale, w_q, w_scale, out_dtype)) <= TOL[out_dtype]
    assert _rel_err(tk.w8a16(x, w_q, w_scale), reference.w8a16(x, w_q, w_scale)) <= 2e-2
    assert _rel_err(tk.w4a16(x, w_packed, scales, 128), reference.w4a16(x, w_packed, scales, 128)) <= 2e-2
    x32 = x.astype(jnp.float32)
    assert _rel_err(tk.w8a16(x32, w_q, w_scale), reference.w8a16(x32, w_q, w_scale)) <= 1e-5


@pytest.mark.gpu
@pytest.mark.parametrize("m", [1, 64])
def test_gpu_pallas_kernels_match_reference(m):
    k, n = 1024, 2048
    x, w = _data(m, k, n, seed=m, dtype=jnp.bfloat16)
    w_q, w_scale = reference.quantize_per_channel(w)
    x_q, x_scale = reference.quantize_per_token(x)
    w_packed, scales = reference.quantize_int4(w, 128)
    out = pallas.w8a8(x_q, x_scale, w_q, w_scale, jnp.float32)
    assert _rel_err(out, reference.w8a8(x_q, x_scale, w_q, w_scale, jnp.float32)) <= 1e-5
    assert _rel_err(pallas.w8a16(x, w_q, w_scale), reference.w8a16(x, w_q, w_scale)) <= 2e-2
    assert _rel_err(pallas.w4a16(x, w_packed, scales, 128), reference.w4a16(x, w_packed, scales, 128)) <= 2e-2
