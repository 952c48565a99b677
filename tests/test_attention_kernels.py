"""The fused attention kernels, Pallas and Triton, against the plain-jnp reference: forward and dq/dk/dv.

One suite parametrized by implementation. On CPU the Pallas kernels run in interpret mode and the Triton kernels
through Triton's interpreter; with JAXDL_TEST_BACKEND=gpu the same tests launch the compiled kernels (Pallas' Triton
backend, jax-triton). Error metric: max |impl - ref| / max |ref| per output, bounds 1e-5 (float32) and 2e-2
(bfloat16/float16). Every test draws its own random inputs (seeded by the test id, never zeros); gradients are those
of sum(out * random cotangent) under jax.jit. The interpreters run every program of the grid in Python, so shapes
stay small; the tiles used make them span several tiles with ragged tails. Also here: the reference against a
float64 loop, argument errors, the launch tables and the tuner, and (marked `gpu`) LLM-sized shapes.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from attention_helpers import HAS_TRITON, TOL, qkv, rng_for, run, segments

from kernels.attention import launch_config as lc
from kernels.attention import pallas, reference

pytestmark = pytest.mark.portable
ON_GPU = jax.default_backend() == "gpu"
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (pip install -e '.[test]' on Linux)")
IMPLS = ["pallas", pytest.param("triton", marks=needs_triton)]

# Tiles per implementation. "test": several tiles per test sequence (Pallas: 32, padded to whole tiles; Triton: the
# table's, i.e. the interpreter defaults fwd 32x16, dK/dV 16x32, dQ 32x16 on CPU); "small": 16 everywhere;
# "mixed": a different tile in every kernel; "big": tiles larger than the test sequences (clamped/shrunk).
PALLAS_TILES = {
    "test": dict(block_q=32, block_kv=32, block_q_bwd=32, block_kv_bwd=32),
    "small": dict(block_q=16, block_kv=16, block_q_bwd=16, block_kv_bwd=16),
    "mixed": dict(block_q=32, block_kv=16, block_q_bwd=16, block_kv_bwd=64),
    "big": dict(block_q=128, block_kv=64, block_q_bwd=64, block_kv_bwd=128),
}
TRITON_TILES = {
    "test": None,
    "small": lc.LaunchConfig(*(lc.KernelConfig(16, 16, 4, 1),) * 3, source="test"),
    "mixed": {
        "fwd": {"BLOCK_M": 16, "BLOCK_N": 32},
        "bwd_dkv": {"BLOCK_M": 32, "BLOCK_N": 16},
        "bwd_dq": {"BLOCK_M": 16},
    },
    "big": {"fwd": {"BLOCK_M": 128, "BLOCK_N": 64}, "bwd_dkv": {"BLOCK_M": 64, "BLOCK_N": 128}},
}


def attend(impl: str, tiles: str = "test"):
    """`f(q, k, v, **kw)`: implementation `impl` ("pallas" | "triton" | "reference") with the named tiles."""
    if impl == "reference":
        return reference.attention
    if impl == "pallas":
        return lambda q, k, v, **kw: pallas.attention(q, k, v, **PALLAS_TILES[tiles], **kw)
    from kernels.attention import triton as fa

    return lambda q, k, v, **kw: fa.attention(q, k, v, config=TRITON_TILES[tiles], **kw)


def _compare(rng, impl, q, k, v, tiles="test", tol=None, **kw):
    """Runs `impl` and the reference; asserts dtypes, finiteness and the relative error of out, dq, dk, dv."""
    ct = jnp.asarray(rng.standard_normal(q.shape, np.float32))
    got = run(attend(impl, tiles), q, k, v, ct, **kw)
    want = run(reference.attention, q, k, v, ct, **kw)
    tol = TOL[q.dtype.type] if tol is None else tol
    for name, g, w, x in zip(("out", "dq", "dk", "dv"), got, want, (q, q, k, v), strict=True):
        assert g.shape == x.shape and g.dtype == x.dtype, (name, g.shape, g.dtype)
        g, w = np.asarray(g, np.float32), np.asarray(w, np.float32)
        assert np.isfinite(g).all(), name
        scale = np.abs(w).max()
        assert scale > 0, name
        err = np.abs(g - w).max() / scale
        assert err < tol, f"{impl} {name}: relative error {err:.2e} >= {tol:.0e}"
    return got, want


# ----------------------------------------------------------------------------------------- core cases
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
def test_plain_and_causal(request, impl, dtype, causal):
    rng = rng_for(request)
    _compare(rng, impl, *qkv(rng, 2, 48, 48, 2, 2, 64, dtype), causal=causal)


@pytest.mark.parametrize("impl", IMPLS)
def test_float16_gqa_and_custom_scale(request, impl):
    rng = rng_for(request)
    _compare(rng, impl, *qkv(rng, 1, 40, 40, 4, 2, 32, jnp.float16), causal=True, scale=0.3)


def test_pallas_default_tiles(request):
    """Pallas' own default blocks (shrunk to the sequence), with a ragged length."""
    rng = rng_for(request)
    q, k, v = qkv(rng, 1, 40, 40, 2, 1, 32, jnp.float32)
    ct = jnp.asarray(rng.standard_normal(q.shape, np.float32))
    got, want = run(pallas.attention, q, k, v, ct, causal=True), run(reference.attention, q, k, v, ct, causal=True)
    for g, w in zip(got, want, strict=True):
        assert np.abs(np.asarray(g) - np.asarray(w)).max() / np.abs(np.asarray(w)).max() < TOL[jnp.float32]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "dtype,causal,q_len,kv_len",
    [(jnp.float32, False, 48, 48), (jnp.bfloat16, True, 48, 48), (jnp.float32, True, 24, 40)],
)
def test_segment_ids(request, impl, dtype, causal, q_len, kv_len):
    """Separate q/kv ids (different boundaries), each with a padding segment (id 0) at the tail."""
    rng = rng_for(request)
    q, k, v = qkv(rng, 2, q_len, kv_len, 2, 1, 32, dtype)
    q_ids, kv_ids = segments(rng, 2, q_len, pad_id=0), segments(rng, 2, kv_len, pad_id=0)
    n = min(q_len, kv_len)
    assert not np.array_equal(np.asarray(q_ids)[:, :n], np.asarray(kv_ids)[:, :n])
    _compare(rng, impl, q, k, v, causal=causal, q_segment_ids=q_ids, kv_segment_ids=kv_ids)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "dtype,q_heads,kv_heads,causal",
    [(jnp.float32, 4, 2, True), (jnp.float32, 4, 1, True), (jnp.bfloat16, 4, 1, False)],  # + float16 4/2 above
)
def test_gqa_mqa(request, impl, dtype, q_heads, kv_heads, causal):
    rng = rng_for(request)
    _compare(rng, impl, *qkv(rng, 1, 40, 40, q_heads, kv_heads, 32, dtype), causal=causal)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "q_len,kv_len,causal",
    [(37, 37, True), (20, 45, True), (45, 20, True), (45, 20, False), (17, 48, False)],
)
def test_ragged_lengths(request, impl, q_len, kv_len, causal):
    """Lengths not divisible by the tiles and Sq != Skv (bottom-right causal alignment)."""
    rng = rng_for(request)
    _compare(rng, impl, *qkv(rng, 1, q_len, kv_len, 2, 1, 32, jnp.float32), causal=causal)


@pytest.mark.parametrize("impl", IMPLS)
def test_mixed_tiles_everything(request, impl):
    """A different tile in every kernel (Pallas: padding to their lcm) with a window, GQA, segment ids and ragged
    Sq != Skv at once."""
    rng = rng_for(request)
    q, k, v = qkv(rng, 2, 45, 38, 4, 2, 32, jnp.float32)
    ids = dict(q_segment_ids=segments(rng, 2, 45, 0, 2), kv_segment_ids=segments(rng, 2, 38, 0, 2))
    _compare(rng, impl, q, k, v, tiles="mixed", causal=True, window=(12, None), **ids)


@pytest.mark.parametrize("impl", IMPLS)
def test_tiles_larger_than_sequence(request, impl):
    """Tiles bigger than the sequence are clamped/shrunk; one tile covers everything."""
    rng = rng_for(request)
    _compare(rng, impl, *qkv(rng, 1, 20, 24, 2, 2, 16, jnp.float32), tiles="big", causal=True)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "dtype,head_dim,seq",
    [(jnp.float32, 128, 32), (jnp.bfloat16, 128, 32), (jnp.float32, 256, 16)],  # 32, 48 and 64: the other tests
)
def test_head_dims(request, impl, dtype, head_dim, seq):
    rng = rng_for(request)
    _compare(rng, impl, *qkv(rng, 1, seq, seq, 2, 1, head_dim, dtype), tiles="small", causal=True)


@pytest.mark.parametrize("impl", IMPLS)
def test_head_dim_not_power_of_two(request, impl):
    """head_dim 48 is zero-padded to 64 in the wrapper (exact); the output keeps 48 columns."""
    rng = rng_for(request)
    _compare(rng, impl, *qkv(rng, 1, 24, 24, 2, 1, 48, jnp.float32))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "window,causal,q_len,kv_len",
    [
        ((8, 4), False, 48, 48),
        ((None, 5), False, 48, 48),
        ((0, 2), False, 48, 48),
        ((20, None), True, 48, 48),
        ((6, 3), False, 20, 44),
        ((5, None), True, 44, 20),
    ],
)
def test_sliding_window(request, impl, window, causal, q_len, kv_len):
    rng = rng_for(request)
    _compare(rng, impl, *qkv(rng, 1, q_len, kv_len, 2, 1, 32, jnp.float32), window=window, causal=causal)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "window,causal,q_len,kv_len",
    [((1, 1), False, 48, 48), (None, True, 47, 48), ((17, None), True, 48, 48), ((15, 17), False, 32, 48)],
)
def test_band_edges_on_tile_boundaries(request, impl, window, causal, q_len, kv_len):
    """Bands whose first/last visible key (query) sits exactly on a 16-tile edge: catches off-by-one tile skipping."""
    rng = rng_for(request)
    q, k, v = qkv(rng, 1, q_len, kv_len, 1, 1, 32, jnp.float32)
    _compare(rng, impl, q, k, v, tiles="small", window=window, causal=causal)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [None, (1, 1), (17, None), (None, 9), (40, 3), (0, 0)])
@pytest.mark.parametrize("q_len,kv_len", [(64, 64), (50, 64), (64, 41)])
def test_pallas_tile_ranges_are_exact(causal, window, q_len, kv_len):
    """Pallas' loop bounds visit exactly the tiles that hold a visible (query, key) pair, in both directions."""
    bq, bk = 16, 32
    cfg = pallas._Config(
        causal=causal,
        window=window,
        scale=1.0,
        q_len=q_len,
        kv_len=kv_len,
        group=1,
        block_q=bq,
        block_kv=bk,
        block_q_bwd=bq,
        block_kv_bwd=bk,
        has_segments=False,
        num_warps=None,
        num_stages=None,
        interpret=True,
    )
    q_pad = -(-q_len // bq) * bq  # padded query rows: positions continue, keys stay real
    m = reference.block_mask(jnp.arange(q_pad) + kv_len - q_len, jnp.arange(kv_len), causal=causal, window=window)
    m = np.ones((q_pad, kv_len), bool) if m is None else np.asarray(m)
    for qt in range(m.shape[0] // bq):
        want = {int(j) // bk for j in np.flatnonzero(m[qt * bq : (qt + 1) * bq].any(0))}
        lo, hi = (int(x) for x in pallas._kv_tile_range(cfg, qt * bq, bq, bk))
        assert set(range(lo, hi)) == want, (qt, lo, hi, want)
    for kt in range(-(-kv_len // bk)):
        rows = m[:q_len, kt * bk : (kt + 1) * bk].any(1)  # the dK/dV loop skips padded rows
        want = {int(i) // bq for i in np.flatnonzero(rows)}
        lo, hi = (int(x) for x in pallas._q_tile_range(cfg, kt * bk, bk, bq))
        assert set(range(lo, hi)) == want, (kt, lo, hi, want)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_fully_masked_rows(request, impl, dtype):
    """Rows whose segment id no key has, and (q_len > kv_len under causal) rows before the first key."""
    rng = rng_for(request)
    q_len, kv_len = 40, 28
    q, k, v = qkv(rng, 2, q_len, kv_len, 2, 1, 32, dtype)
    q_ids = np.asarray(segments(rng, 2, q_len, pad_id=-1))  # -1: a padding id that no key has
    kv_ids = segments(rng, 2, kv_len, pad_id=0)
    got, want = _compare(rng, impl, q, k, v, causal=True, q_segment_ids=jnp.asarray(q_ids), kv_segment_ids=kv_ids)
    dead = np.asarray(~reference.mask(q_len, kv_len, causal=True, q_segment_ids=q_ids, kv_segment_ids=kv_ids).any(-1))
    assert dead[:, : q_len - kv_len].all() and (q_ids == -1).any() and dead[q_ids == -1].all()
    out, dq = np.asarray(got[0], np.float32), np.asarray(got[1], np.float32)
    assert (out[dead] == 0).all() and (dq[dead] == 0).all()
    assert (np.asarray(want[0], np.float32)[dead] == 0).all()


@pytest.mark.parametrize("impl", ["reference", *IMPLS])
def test_all_rows_masked(request, impl):
    """Nothing visible anywhere: zeros out, zero (finite) gradients."""
    rng = rng_for(request)
    q, k, v = qkv(rng, 1, 24, 24, 2, 2, 32, jnp.float32)
    ct = jnp.asarray(rng.standard_normal(q.shape, np.float32))
    ids = dict(q_segment_ids=jnp.ones((1, 24), jnp.int32), kv_segment_ids=jnp.zeros((1, 24), jnp.int32))
    for x in run(attend(impl), q, k, v, ct, **ids):
        assert np.isfinite(np.asarray(x)).all() and not np.asarray(x).any()


@pytest.mark.parametrize("impl", IMPLS)
def test_eager_and_jit_agree(request, impl):
    """Outside jax.jit (eager custom_vjp) the result is the same as under jit."""
    rng = rng_for(request)
    q, k, v = qkv(rng, 1, 20, 20, 2, 1, 16, jnp.float32)
    f = attend(impl)
    eager = f(q, k, v, causal=True)
    jitted = jax.jit(lambda q, k, v: f(q, k, v, causal=True))(q, k, v)
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(jitted))
    assert np.isfinite(np.asarray(eager)).all() and np.abs(np.asarray(eager)).max() > 0


# ----------------------------------------------------------------------------------------- reference truth
def test_window_matches_reference_mask_definition():
    """window + causal == causal with a left reach; right is ignored under causal."""
    a = reference.mask(10, 10, causal=True, window=(3, 7))
    b = reference.mask(10, 10, causal=True, window=(3, None))
    i, j = np.meshgrid(np.arange(10), np.arange(10), indexing="ij")
    np.testing.assert_array_equal(np.asarray(a[0]), (j <= i) & (j >= i - 3))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _naive_numpy(q, k, v, *, causal, window, q_ids, kv_ids, scale):
    """Row-by-row softmax loop in float64, written from the semantics, not from reference.mask."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    batch, q_len, q_heads, head_dim = q.shape
    kv_len, kv_heads = k.shape[1], k.shape[2]
    out = np.zeros_like(q)
    for b in range(batch):
        for h in range(q_heads):
            hk = h // (q_heads // kv_heads)
            for i in range(q_len):
                pos = i + kv_len - q_len
                keys = [
                    j
                    for j in range(kv_len)
                    if (not causal or j <= pos)
                    and (window[0] is None or j >= pos - window[0])
                    and (window[1] is None or causal or j <= pos + window[1])
                    and q_ids[b, i] == kv_ids[b, j]
                ]
                if not keys:
                    continue
                s = np.array([q[b, i, h] @ k[b, j, hk] * scale for j in keys])
                p = np.exp(s - s.max())
                p /= p.sum()
                out[b, i, h] = sum(pj * v[b, j, hk] for pj, j in zip(p, keys, strict=True))
    return out


@pytest.mark.parametrize("causal,window", [(True, (6, None)), (False, (5, 3))])
def test_reference_against_naive_numpy(request, causal, window):
    rng = rng_for(request)
    q, k, v = qkv(rng, 2, 12, 20, 4, 2, 8, jnp.float32)
    q_ids, kv_ids = segments(rng, 2, 12, 0, 2), segments(rng, 2, 20, 0, 2)
    with jax.default_matmul_precision("highest"):
        got = reference.attention(
            q, k, v, causal=causal, window=window, q_segment_ids=q_ids, kv_segment_ids=kv_ids, scale=0.3
        )
    want = _naive_numpy(
        q, k, v, causal=causal, window=window, q_ids=np.asarray(q_ids), kv_ids=np.asarray(kv_ids), scale=0.3
    )
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------- argument errors
def _x(*shape, dtype=jnp.float32):
    return jnp.ones(shape, dtype)


ERRORS = [  # shared validation (reference.validate): every implementation raises these
    (dict(q=_x(2, 16, 4)), r"q: expected \[batch, seq, heads, head_dim\]"),
    (dict(k=_x(3, 16, 4, 64)), r"k: expected \[batch, seq, heads, head_dim\] with batch 2 .* got \(3, 16, 4, 64\)"),
    (dict(k=_x(2, 16, 4, 32)), r"k: .*head_dim 64"),
    (dict(v=_x(2, 8, 4, 64)), r"v: expected the shape of k"),
    (dict(k=_x(2, 16, 3, 64), v=_x(2, 16, 3, 64)), r"k: expected a number of heads that divides q's 4"),
    (dict(v=_x(2, 16, 4, 64, dtype=jnp.bfloat16)), r"v: expected dtype float32 like q"),
    (dict(q=_x(2, 16, 4, 64, dtype=jnp.int32)), r"q: expected a floating dtype"),
    (dict(q_segment_ids=_x(2, 16, dtype=jnp.int32)), r"kv_segment_ids: .*given together"),
    (
        dict(q_segment_ids=_x(2, 15, dtype=jnp.int32), kv_segment_ids=_x(2, 16, dtype=jnp.int32)),
        r"q_segment_ids: expected shape \[batch, seq\] = \(2, 16\)",
    ),
    (
        dict(q_segment_ids=_x(2, 16, dtype=jnp.int32), kv_segment_ids=_x(2, 16)),
        r"kv_segment_ids: expected an integer dtype",
    ),
    (dict(window=(4,)), r"window: expected None or a \(left, right\) pair"),
    (dict(window=(-1, 2)), r"window: left must be a non-negative int"),
    (dict(scale="big"), r"scale: expected a Python float"),
]
TRITON_ERRORS = [  # the Triton wrapper's own limits and launch-configuration checks
    (dict(q=_x(1, 16, 4, 320), k=_x(1, 16, 4, 320), v=_x(1, 16, 4, 320)), r"q: .*head_dim <= 256, got 320"),
    (dict(backend="cuda"), r"backend: expected 'auto', 'gpu' or 'interpret'"),
    (dict(config={"fwd": {"BLOCK_M": 24}}), r"config.fwd.BLOCK_M: expected a power of two >= 16, got 24"),
    (dict(config={"fwd": {"block_m": 32}}), r"config.fwd: unknown keys \['block_m'\]"),
    (dict(config={"bwd": {}}), r"config: unknown keys \['bwd'\]"),
    (dict(config={"bwd_dq": {"num_warps": 3}}), r"config.bwd_dq.num_warps: expected 1, 2, 4, 8 or 16"),
    (dict(config=[1, 2]), r"config: expected None, a LaunchConfig or a mapping"),
    (dict(config={"fwd": {"num_stages": "3"}}), r"config.fwd.num_stages: expected an int, got '3'"),
]


@pytest.mark.parametrize("impl", ["reference", *IMPLS])
@pytest.mark.parametrize("override,message", ERRORS)
def test_argument_errors(impl, override, message):
    args = dict(q=_x(2, 16, 4, 64), k=_x(2, 16, 4, 64), v=_x(2, 16, 4, 64)) | override
    with pytest.raises(ValueError, match=message):
        attend(impl)(**args)


@needs_triton
@pytest.mark.parametrize("override,message", TRITON_ERRORS)
def test_triton_argument_errors(override, message):
    from kernels.attention import triton as fa

    args = dict(q=_x(2, 16, 4, 64), k=_x(2, 16, 4, 64), v=_x(2, 16, 4, 64)) | override
    with pytest.raises(ValueError, match=message):
        fa.attention(**args)


def test_pallas_block_size_error():
    with pytest.raises(ValueError, match=r"block_kv: expected a positive int, got 0"):
        pallas.attention(_x(1, 16, 2, 64), _x(1, 16, 2, 64), _x(1, 16, 2, 64), block_kv=0)


@needs_triton
def test_triton_offset_limit_error():
    """Sequences whose in-sequence offsets would overflow int32 are refused (checked on abstract shapes)."""
    from kernels.attention import triton as fa

    q = jax.ShapeDtypeStruct((1, 2**22, 8, 64), jnp.bfloat16)
    with pytest.raises(ValueError, match=r"q: seq \* heads \* head_dim must be < 2\*\*31"):
        jax.eval_shape(fa.attention, q, q, q)


# ----------------------------------------------------------------------------------------- GPU lowering (Pallas)
@pytest.mark.parametrize(
    "dtype,q_len,heads,head_dim,kw",
    [
        (jnp.bfloat16, 256, (4, 2), 128, dict()),
        (jnp.bfloat16, 256, (4, 4), 64, dict(causal=True, window=(64, None), segments=True)),
        (jnp.float32, 100, (4, 1), 256, dict(window=(32, 16))),
    ],
    ids=["bf16-gqa", "bf16-causal-window-segments", "f32-ragged-d256-mqa"],
)
def test_pallas_lowers_to_triton_ir(monkeypatch, dtype, q_len, heads, head_dim, kw):
    """Without a GPU: lower forward + backward for CUDA (Pallas Triton backend) on an abstract H100, to MLIR."""
    try:
        from jax.experimental.pallas import triton as pl_triton
    except ImportError:
        pytest.skip("this jax has no Pallas Triton backend")
    try:  # where the backend asks which GPU it compiles for: jax >= 0.12, else jax 0.11
        from jax._src import gpu_info
    except ImportError:
        from jax._src.pallas.triton import gpu_info
    monkeypatch.setattr(gpu_info, "get_gpu_info", lambda: gpu_info._get_gpu_info_impl(gpu_info.GpuVersion.H100))
    kw, kv_len = dict(kw), 256
    if kw.pop("segments", False):
        kw.update(q_segment_ids=jnp.zeros((1, q_len), jnp.int32), kv_segment_ids=jnp.zeros((1, kv_len), jnp.int32))
    q = jax.ShapeDtypeStruct((1, q_len, heads[0], head_dim), dtype)
    kv = jax.ShapeDtypeStruct((1, kv_len, heads[1], head_dim), dtype)
    loss = lambda q, k, v: jnp.sum(pallas.attention(q, k, v, interpret=False, **kw).astype(jnp.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the Pallas Triton backend is deprecated since 0.11
        lowered = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).trace(q, kv, kv).lower(lowering_platforms=("cuda",))
    text = lowered.as_text()
    for name in ("flash_attention_fwd", "flash_attention_dkv", "flash_attention_dq"):
        assert f'name = "{name}"' in text, name
    assert text.count(pl_triton.CUSTOM_CALL_TARGET_NAME) == 3


# ----------------------------------------------------------------------------------------- GPU, LLM-sized shapes
GPU_CASES = [
    dict(shape=(2, 1024, 8, 2, 128), causal=False),
    dict(shape=(1, 2048, 8, 2, 64), causal=True, window=(256, None)),
    dict(shape=(2, 1000, 4, 1, 256), causal=True, segments=True),
    dict(shape=(1, 777, 4, 2, 128), causal=True, kv_len=1333),
]


@pytest.mark.gpu
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_gpu_against_reference(request, impl, dtype, case):
    """The compiled kernels with their default launch configurations (Triton: the table's entry for this GPU;
    Pallas: its default blocks) on bigger shapes, forward and gradients."""
    case = dict(case)
    batch, q_len, q_heads, kv_heads, head_dim = case.pop("shape")
    kv_len = case.pop("kv_len", q_len)
    rng = rng_for(request)
    q, k, v = qkv(rng, batch, q_len, kv_len, q_heads, kv_heads, head_dim, dtype)
    if case.pop("segments", False):
        case.update(q_segment_ids=segments(rng, batch, q_len, 0, 4), kv_segment_ids=segments(rng, batch, kv_len, 0, 4))
    f = pallas.attention if impl == "pallas" else attend("triton")
    ct = jnp.asarray(rng.standard_normal(q.shape, np.float32))
    got, want = run(f, q, k, v, ct, **case), run(reference.attention, q, k, v, ct, **case)
    # float32: 1e-4 rather than 1e-5, for reductions over ~1000 keys/queries in a different order than XLA's.
    tol = 1e-4 if dtype == jnp.float32 else TOL[jnp.bfloat16]
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        g, w = np.asarray(g, np.float32), np.asarray(w, np.float32)
        assert np.isfinite(g).all(), name
        err = np.abs(g - w).max() / np.abs(w).max()
        assert err < tol, f"{impl} {name}: relative error {err:.2e} >= {tol:.0e}"
