"""Pallas fused attention (interpret mode on CPU) against the plain-jnp reference, forward and dq/dk/dv.

Error metric: max |impl - ref| / max |ref| per output, bounds 1e-5 (float32) and 2e-2 (bfloat16). Every test draws
its own random inputs (seeded by the test id, never zeros); gradients are those of sum(out * random cotangent).
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from attention_helpers import TOL, qkv, rng_for, run, segments

from kernels.attention import pallas, reference

BLOCKS = dict(block_q=32, block_kv=32, block_q_bwd=32, block_kv_bwd=32)


def _compare(rng, q, k, v, blocks=BLOCKS, **kw):
    """Runs both implementations; asserts dtypes, finiteness and the relative error of out, dq, dk, dv."""
    ct = jnp.asarray(rng.standard_normal(q.shape, np.float32))
    got = run(pallas.attention, q, k, v, ct, **blocks, **kw)
    want = run(reference.attention, q, k, v, ct, **kw)
    tol = TOL[q.dtype.type]
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
    _compare(rng, *qkv(rng, 2, 64, 64, 2, 2, 64, dtype), causal=causal)


@pytest.mark.parametrize("causal", [False, True])
def test_default_blocks(request, causal):
    rng = rng_for(request)
    _compare(rng, *qkv(rng, 1, 80, 80, 2, 1, 64, jnp.float32), blocks={}, causal=causal)


@pytest.mark.parametrize(
    "dtype,causal,q_len,kv_len",
    [
        (jnp.float32, False, 64, 64),
        (jnp.float32, True, 64, 64),
        (jnp.bfloat16, True, 64, 64),
        (jnp.float32, True, 48, 80),
    ],
)
def test_segment_ids(request, dtype, causal, q_len, kv_len):
    """Separate q/kv ids (different boundaries), each with a padding segment (id 0) at the tail."""
    rng = rng_for(request)
    q, k, v = qkv(rng, 2, q_len, kv_len, 2, 2, 64, dtype)
    q_ids, kv_ids = segments(rng, 2, q_len, pad_id=0), segments(rng, 2, kv_len, pad_id=0)
    assert not np.array_equal(np.asarray(q_ids)[:, : min(q_len, kv_len)], np.asarray(kv_ids)[:, : min(q_len, kv_len)])
    _compare(rng, q, k, v, causal=causal, q_segment_ids=q_ids, kv_segment_ids=kv_ids)


@pytest.mark.parametrize(
    "dtype,q_heads,kv_heads,causal",
    [
        (jnp.float32, 4, 2, False),
        (jnp.float32, 4, 2, True),
        (jnp.float32, 4, 1, True),
        (jnp.bfloat16, 4, 1, False),
        (jnp.float16, 4, 2, True),
    ],
)
def test_gqa_mqa(request, dtype, q_heads, kv_heads, causal):
    rng = rng_for(request)
    _compare(rng, *qkv(rng, 2, 64, 64, q_heads, kv_heads, 64, dtype), causal=causal)


@pytest.mark.parametrize(
    "q_len,kv_len,causal",
    [(100, 100, False), (100, 100, True), (40, 100, True), (100, 40, True), (100, 40, False), (24, 72, False)],
)
def test_ragged_lengths(request, q_len, kv_len, causal):
    """Lengths not divisible by the 32 blocks (padded in the wrapper) and Sq != Skv (bottom-right causal)."""
    rng = rng_for(request)
    _compare(rng, *qkv(rng, 1, q_len, kv_len, 2, 1, 64, jnp.float32), causal=causal)


def test_mixed_blocks_ragged(request):
    """Different forward/backward tiles (padding to their lcm) with a window, GQA and segment ids at once."""
    rng = rng_for(request)
    q, k, v = qkv(rng, 2, 90, 70, 4, 2, 64, jnp.float32)
    blocks = dict(block_q=32, block_kv=16, block_q_bwd=16, block_kv_bwd=64)
    ids = dict(q_segment_ids=segments(rng, 2, 90, 0, 2), kv_segment_ids=segments(rng, 2, 70, 0, 2))
    _compare(rng, q, k, v, blocks=blocks, causal=True, window=(24, None), **ids)


@pytest.mark.parametrize(
    "dtype,head_dim", [(jnp.float32, 64), (jnp.float32, 128), (jnp.float32, 256), (jnp.bfloat16, 256)]
)
def test_head_dims(request, dtype, head_dim):
    rng = rng_for(request)
    _compare(rng, *qkv(rng, 1, 32, 32, 2, 2, head_dim, dtype), blocks=dict(block_q=16, block_kv=16), causal=True)


def test_head_dim_not_power_of_two(request):
    rng = rng_for(request)
    _compare(rng, *qkv(rng, 1, 32, 32, 2, 1, 48, jnp.float32))


@pytest.mark.parametrize(
    "window,causal",
    [((8, 4), False), ((16, None), False), ((None, 5), False), ((0, 2), False), ((8, 4), True), ((20, None), True)],
)
def test_sliding_window(request, window, causal):
    rng = rng_for(request)
    _compare(rng, *qkv(rng, 1, 96, 96, 2, 1, 64, jnp.float32), window=window, causal=causal)


@pytest.mark.parametrize(
    "window,causal,q_len,kv_len",
    [((1, 1), False, 64, 64), (None, True, 63, 64), ((17, None), True, 64, 64), ((15, 17), False, 48, 64)],
)
def test_band_edges_on_tile_boundaries(request, window, causal, q_len, kv_len):
    """Bands whose first/last visible key (query) sits exactly on a 16-tile edge: catches off-by-one tile skipping."""
    rng = rng_for(request)
    q, k, v = qkv(rng, 1, q_len, kv_len, 1, 1, 64, jnp.float32)
    _compare(rng, q, k, v, blocks=dict.fromkeys(BLOCKS, 16), window=window, causal=causal)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [None, (1, 1), (17, None), (None, 9), (40, 3), (0, 0)])
@pytest.mark.parametrize("q_len,kv_len", [(64, 64), (50, 64), (64, 41)])
def test_tile_ranges_are_exact(causal, window, q_len, kv_len):
    """The kernels' loop bounds visit exactly the tiles that hold a visible (query, key) pair, in both directions."""
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


def test_window_matches_reference_mask_definition():
    """window + causal == causal with a left reach; right is ignored under causal."""
    a = reference.mask(10, 10, causal=True, window=(3, 7))
    b = reference.mask(10, 10, causal=True, window=(3, None))
    i, j = np.meshgrid(np.arange(10), np.arange(10), indexing="ij")
    np.testing.assert_array_equal(np.asarray(a[0]), (j <= i) & (j >= i - 3))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_fully_masked_rows(request, dtype):
    """Query rows whose segment id has no key (and, with q_len > kv_len under causal, rows before the first key)."""
    rng = rng_for(request)
    q_len, kv_len = 64, 48
    q, k, v = qkv(rng, 2, q_len, kv_len, 2, 1, 64, dtype)
    q_ids = np.asarray(segments(rng, 2, q_len, pad_id=-1))  # -1: a padding id that no key has
    kv_ids = segments(rng, 2, kv_len, pad_id=0)
    got, want = _compare(rng, q, k, v, causal=True, q_segment_ids=jnp.asarray(q_ids), kv_segment_ids=kv_ids)
    dead = np.asarray(~reference.mask(q_len, kv_len, causal=True, q_segment_ids=q_ids, kv_segment_ids=kv_ids).any(-1))
    assert dead[:, : q_len - kv_len].all() and (q_ids == -1).any() and dead[q_ids == -1].all()
    out, dq = np.asarray(got[0], np.float32), np.asarray(got[1], np.float32)
    assert (out[dead] == 0).all() and (dq[dead] == 0).all()
    assert (np.asarray(want[0], np.float32)[dead] == 0).all()


def test_all_rows_masked(request):
    """Nothing visible anywhere: zeros out, zero (finite) gradients."""
    rng = rng_for(request)
    q, k, v = qkv(rng, 1, 32, 32, 2, 2, 64, jnp.float32)
    ct = jnp.asarray(rng.standard_normal(q.shape, np.float32))
    ids = dict(q_segment_ids=jnp.ones((1, 32), jnp.int32), kv_segment_ids=jnp.zeros((1, 32), jnp.int32))
    for impl in (pallas.attention, reference.attention):
        for x in run(impl, q, k, v, ct, **ids):
            assert np.isfinite(np.asarray(x)).all() and not np.asarray(x).any()


# ----------------------------------------------------------------------------------------- reference truth
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


ERRORS = [
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


@pytest.mark.parametrize("impl", [reference.attention, pallas.attention], ids=["reference", "pallas"])
@pytest.mark.parametrize("override,message", ERRORS)
def test_argument_errors(impl, override, message):
    args = dict(q=_x(2, 16, 4, 64), k=_x(2, 16, 4, 64), v=_x(2, 16, 4, 64)) | override
    with pytest.raises(ValueError, match=message):
        impl(**args)


def test_block_size_error():
    with pytest.raises(ValueError, match=r"block_kv: expected a positive int, got 0"):
        pallas.attention(_x(1, 16, 2, 64), _x(1, 16, 2, 64), _x(1, 16, 2, 64), block_kv=0)


# ----------------------------------------------------------------------------------------- GPU lowering
@pytest.mark.parametrize(
    "dtype,q_len,heads,head_dim,kw",
    [
        (jnp.bfloat16, 256, (4, 2), 128, dict()),
        (jnp.bfloat16, 256, (4, 4), 64, dict(causal=True, window=(64, None), segments=True)),
        (jnp.float32, 100, (4, 1), 256, dict(window=(32, 16))),
    ],
    ids=["bf16-gqa", "bf16-causal-window-segments", "f32-ragged-d256-mqa"],
)
def test_lowers_to_triton_ir(monkeypatch, dtype, q_len, heads, head_dim, kw):
    """Without a GPU: lower forward + backward for CUDA (Pallas Triton backend) on an abstract H100, to MLIR."""
    try:
        from jax._src.pallas.triton import gpu_info
        from jax.experimental.pallas import triton as pl_triton
    except ImportError:
        pytest.skip("this jaxlib has no Pallas Triton backend")
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
