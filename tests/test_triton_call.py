"""kernels.triton_call: the same Triton kernels through the interpreter (CPU) and jax-triton (GPU, marked `gpu`),
and the binding to both jax-triton conventions (0.3 for triton 3.6, 0.4) checked without a GPU."""

import importlib.metadata

import numpy as np
import pytest

triton = pytest.importorskip("triton", reason="triton is not installed (pip install -e '.[test]' on Linux)")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_dtypes  # noqa: E402
import triton.language as tl  # noqa: E402

from kernels import triton_call as tc  # noqa: E402
from kernels import triton_gpu  # noqa: E402
from kernels.triton_call import jit, triton_call  # noqa: E402

pytestmark = pytest.mark.portable
INTERPRETER = "Triton's interpreter path (the CPU run covers it; GPU images may carry a Triton it was not checked on)"
interpreter_only = pytest.mark.cpu_only(INTERPRETER)
BACKENDS = [pytest.param("interpret", marks=interpreter_only), pytest.param("gpu", marks=pytest.mark.gpu)]


def _jax_triton_version() -> tuple[int, ...]:
    return tuple(int(p) for p in importlib.metadata.version("jax-triton").split(".")[:2])


@pytest.fixture
def backend(request):
    """The `backend` parameter; the GPU runs need jax-triton (the `[gpu]` extra)."""
    if request.param == "gpu":
        pytest.importorskip("jax_triton", reason="backend='gpu' needs jax-triton (pip install -e '.[gpu]')")
    return request.param


# ----------------------------------------------------------------------------------------------- kernels


@jit
def add_kernel(x_ptr, y_ptr, n, out_ptr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    y = tl.load(y_ptr + offs, mask=mask)
    tl.store(out_ptr + offs, x + y, mask=mask)


@jit
def matmul_kernel(
    a_ptr,
    b_ptr,
    M,
    N,
    K,
    c_ptr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    INPUT_PRECISION: tl.constexpr = "ieee",
):
    """c[M, N] = a[M, K] @ b[K, N] (row-major), accumulated in c's dtype (fp32 or int32)."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=c_ptr.dtype.element_ty)
    for k0 in range(0, K, BK):
        kk = k0 + rk
        a = tl.load(a_ptr + rm[:, None] * K + kk[None, :], mask=(rm[:, None] < M) & (kk[None, :] < K), other=0)
        b = tl.load(b_ptr + kk[:, None] * N + rn[None, :], mask=(kk[:, None] < K) & (rn[None, :] < N), other=0)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION, out_dtype=c_ptr.dtype.element_ty)
    tl.store(c_ptr + rm[:, None] * N + rn[None, :], acc, mask=(rm[:, None] < M) & (rn[None, :] < N))


@jit
def _affine(x, alpha, beta):
    """A helper jit function called from a kernel (a device function)."""
    return x * alpha + beta


@jit
def multi_kernel(x_ptr, acc_ptr, n, alpha, beta, y_ptr, sq_ptr, count_ptr, BLOCK: tl.constexpr):
    """y = alpha*x + beta, sq = x*x, acc += x (in place), count += 1 per program (needs a zeroed count)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    tl.store(y_ptr + offs, _affine(x, alpha, beta), mask=mask)
    tl.store(sq_ptr + offs, x * x, mask=mask)
    tl.store(acc_ptr + offs, tl.load(acc_ptr + offs, mask=mask) + x, mask=mask)
    tl.atomic_add(count_ptr, 1)


@jit
def copy_kernel(x_ptr, n, y_ptr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)


@jit
def half_kernel(x_ptr, n, y_ptr, BLOCK: tl.constexpr):
    """Writes only the first half of y (to see debug fills)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n // 2
    tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=mask), mask=mask)


@jit
def mul_fwd_kernel(x_ptr, w_ptr, n, y_ptr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=mask) * tl.load(w_ptr + offs, mask=mask), mask=mask)


@jit
def mul_bwd_kernel(x_ptr, w_ptr, g_ptr, n, dx_ptr, dw_ptr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(g_ptr + offs, mask=mask)
    tl.store(dx_ptr + offs, g * tl.load(w_ptr + offs, mask=mask), mask=mask)
    tl.store(dw_ptr + offs, g * tl.load(x_ptr + offs, mask=mask), mask=mask)


@jit
def bf16_ops_kernel(x_ptr, y_ptr, rowmax_ptr, rowsum_ptr, absval_ptr, as_int_ptr, R: tl.constexpr, C: tl.constexpr):
    """bf16 arithmetic, reductions, comparisons and casts (the interpreter alone computes these on bit patterns)."""
    r = tl.arange(0, R)
    idx = r[:, None] * C + tl.arange(0, C)[None, :]
    x = tl.load(x_ptr + idx)
    tl.store(y_ptr + idx, x * x + x)
    tl.store(rowmax_ptr + r, tl.max(x, axis=1))
    tl.store(rowsum_ptr + r, tl.sum(x, axis=1))
    tl.store(absval_ptr + idx, tl.where(x > 0, x, -x))
    tl.store(as_int_ptr + idx, (x * 4).to(tl.int32))


@triton.autotune(configs=[triton.Config({"BLOCK": 64}), triton.Config({"BLOCK": 256})], key=["n"])
@triton.heuristics({"EVEN": lambda args: args["n"] % args["BLOCK"] == 0})
@jit
def tuned_scale_kernel(x_ptr, n, y_ptr, BLOCK: tl.constexpr, EVEN: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    if EVEN:
        tl.store(y_ptr + offs, tl.load(x_ptr + offs) * 2)
    else:
        tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=offs < n) * 2, mask=offs < n)


# ----------------------------------------------------------------------------------------------- helpers


def rng_normal(key, shape, dtype=jnp.float32):
    return jax.random.normal(jax.random.key(key), shape, jnp.float32).astype(dtype)


def add(x, y, backend="auto"):
    n = x.size
    return triton_call(
        x,
        y,
        n,
        kernel=add_kernel,
        out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype),
        grid=lambda meta: (triton.cdiv(n, meta["BLOCK"]),),
        BLOCK=128,
        backend=backend,
    )


def matmul(a, b, out_dtype, backend="auto", **meta):
    (M, K), (_, N) = a.shape, b.shape
    meta = {"BM": 16, "BN": 16, "BK": 16} | meta
    return triton_call(
        a,
        b,
        M,
        N,
        K,
        kernel=matmul_kernel,
        out_shape=jax.ShapeDtypeStruct((M, N), out_dtype),
        grid=lambda m: (triton.cdiv(M, m["BM"]), triton.cdiv(N, m["BN"])),
        backend=backend,
        **meta,
    )


def _mul_call(kernel, arrays, n_out, backend):
    x = arrays[0]
    out = jax.ShapeDtypeStruct(x.shape, x.dtype)
    return triton_call(
        *arrays,
        x.size,
        kernel=kernel,
        out_shape=out if n_out == 1 else (out,) * n_out,
        grid=lambda m: (triton.cdiv(x.size, m["BLOCK"]),),
        BLOCK=64,
        backend=backend,
    )


def make_triton_mul(backend):
    @jax.custom_vjp
    def mul(x, w):
        return _mul_call(mul_fwd_kernel, (x, w), 1, backend)

    def fwd(x, w):
        return mul(x, w), (x, w)

    def bwd(res, g):
        x, w = res
        return _mul_call(mul_bwd_kernel, (x, w, g), 2, backend)

    mul.defvjp(fwd, bwd)
    return mul


# ----------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_vector_add_masked_tail_under_jit(backend):
    n = 1000  # not a multiple of BLOCK=128
    x, y = rng_normal(0, (n,)), rng_normal(1, (n,))
    out = jax.jit(lambda a, b: add(a, b, backend))(x, y)
    np.testing.assert_allclose(np.asarray(out), np.asarray(x) + np.asarray(y), rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize(
    "in_dtype,out_dtype,rtol",
    [(jnp.float32, jnp.float32, 1e-5), (jnp.bfloat16, jnp.float32, 2e-2), (jnp.int8, jnp.int32, 0)],
    ids=["fp32", "bf16-fp32acc", "int8-int32"],
)
def test_matmul(backend, in_dtype, out_dtype, rtol):
    M, N, K = 50, 40, 70  # none a multiple of the 16x16x16 blocks
    if in_dtype == jnp.int8:
        a = jax.random.randint(jax.random.key(2), (M, K), -128, 128, jnp.int32).astype(jnp.int8)
        b = jax.random.randint(jax.random.key(3), (K, N), -128, 128, jnp.int32).astype(jnp.int8)
    else:
        a, b = rng_normal(2, (M, K), in_dtype), rng_normal(3, (K, N), in_dtype)
    bk = 32 if in_dtype == jnp.int8 else 16  # int8 MMA wants K tiles of 32 on GPUs
    c = jax.jit(lambda a, b: matmul(a, b, out_dtype, backend, BK=bk))(a, b)
    assert c.dtype == out_dtype and c.shape == (M, N)
    ref = np.asarray(a, np.float64) @ np.asarray(b, np.float64)
    if rtol == 0:
        np.testing.assert_array_equal(np.asarray(c), ref.astype(np.int64))
    else:
        rel = np.linalg.norm(np.asarray(c, np.float64) - ref) / np.linalg.norm(ref)
        assert rel < rtol, rel


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_multiple_outputs_scalars_aliases_zeroed(backend):
    n, block = 300, 64
    x, acc = rng_normal(4, (n,)), rng_normal(5, (n,))
    grid_calls = []

    def grid(meta):
        grid_calls.append(dict(meta))
        return (triton.cdiv(n, meta["BLOCK"]),)

    f32 = jax.ShapeDtypeStruct((n,), jnp.float32)

    @jax.jit
    def run(x, acc):
        # Operands: x (0), acc (1), n (2), alpha (3), beta (4); acc is aliased to output 0.
        return triton_call(
            x,
            acc,
            n,
            2.5,
            np.float32(-1.0),
            kernel=multi_kernel,
            out_shape=(f32, f32, f32, jax.ShapeDtypeStruct((1,), jnp.int32)),
            grid=grid,
            input_output_aliases={1: 0},
            zeroed_outputs=(3,),
            BLOCK=block,
            backend=backend,
        )

    if backend == "gpu" and _jax_triton_version() < (0, 4):
        with pytest.raises(NotImplementedError, match="input_output_aliases needs jax-triton >= 0.4"):
            run(x, acc)
        return
    new_acc, y, sq, count = run(x, acc)
    xn = np.asarray(x)
    np.testing.assert_allclose(np.asarray(new_acc), np.asarray(acc) + xn, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(y), 2.5 * xn - 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(sq), xn * xn, rtol=1e-6)
    assert int(count[0]) == triton.cdiv(n, block)  # starts from zero because it is zeroed
    assert grid_calls and grid_calls[0]["BLOCK"] == block
    # The input passed as the aliased buffer is not modified (JAX arrays are immutable).
    np.testing.assert_array_equal(np.asarray(acc), np.asarray(rng_normal(5, (n,))))


@interpreter_only
def test_zeroed_outputs_callable_and_debug_fill():
    n = 100
    x = rng_normal(6, (n,))
    out = jax.ShapeDtypeStruct((n,), jnp.float32)

    def call(**kw):
        return triton_call(x, n, kernel=half_kernel, out_shape=out, grid=(2,), BLOCK=64, **kw)

    debug = np.asarray(call(debug=True))
    np.testing.assert_array_equal(debug[: n // 2], np.asarray(x)[: n // 2])
    assert np.isnan(debug[n // 2 :]).all()  # unwritten elements show up
    zeroed = np.asarray(call(zeroed_outputs=lambda meta: [0] if meta["BLOCK"] == 64 else []))
    np.testing.assert_array_equal(zeroed[n // 2 :], 0)


@interpreter_only
@pytest.mark.parametrize(
    "dtype",
    [ml_dtypes.bfloat16, np.float16, np.float32, np.int8, np.int32, np.uint8, np.int64],
    ids=lambda d: d.__name__,
)
def test_dtypes_roundtrip(dtype):
    n = 77
    bits = np.random.default_rng(0).integers(0, 256, size=n * np.dtype(dtype).itemsize, dtype=np.uint8)
    x = bits.view(dtype)
    if np.issubdtype(np.dtype(dtype), np.floating) or dtype is ml_dtypes.bfloat16:
        x = np.where(np.isfinite(x.astype(np.float32)), x, 0).astype(dtype)  # NaN payloads need not survive
    with jax.enable_x64(dtype == np.int64):  # JAX needs x64 for int64 arrays
        y = triton_call(
            jnp.asarray(x), n, kernel=copy_kernel, out_shape=jax.ShapeDtypeStruct((n,), dtype), grid=(2,), BLOCK=64
        )
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(y).view(np.uint8), x.view(np.uint8))

    # The adapter directly, with numpy arrays updated in place.
    out = np.zeros(n, dtype)
    tc.interpret_kernel(copy_kernel, (2,), x.copy(), n, out, BLOCK=64)
    np.testing.assert_array_equal(out.view(np.uint8), x.view(np.uint8))


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_bf16_arithmetic_reductions_casts(backend):
    R, C = 8, 32
    x = rng_normal(14, (R, C), jnp.bfloat16) * 3
    bf = jax.ShapeDtypeStruct
    outs = triton_call(
        x,
        kernel=bf16_ops_kernel,
        out_shape=(
            bf((R, C), jnp.bfloat16),
            bf((R,), jnp.bfloat16),
            bf((R,), jnp.bfloat16),
            bf((R, C), jnp.bfloat16),
            bf((R, C), jnp.int32),
        ),
        grid=(1,),
        R=R,
        C=C,
        backend=backend,
    )
    y, rowmax, rowsum, absval, as_int = (np.asarray(o) for o in outs)
    xb = np.asarray(x)
    xf = xb.astype(np.float32)
    square = (xf * xf).astype(ml_dtypes.bfloat16).astype(np.float32)
    expected = (square + xf).astype(ml_dtypes.bfloat16)  # rounded after each op (a GPU may fuse into one fma)
    np.testing.assert_allclose(y.astype(np.float32), expected.astype(np.float32), rtol=1e-2)
    if backend == "interpret":
        np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(rowmax, xb.max(axis=1))
    np.testing.assert_allclose(rowsum.astype(np.float32), xf.sum(axis=1), rtol=2e-2, atol=0.1)
    np.testing.assert_array_equal(absval, np.abs(xb))
    np.testing.assert_array_equal(as_int, np.trunc(xf * 4).astype(np.int32))


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_custom_vjp_fwd_and_bwd_kernels(backend):
    n = 200
    x, w, c = rng_normal(7, (n,)), rng_normal(8, (n,)), rng_normal(9, (n,))
    mul = make_triton_mul(backend)

    def loss(f):
        return lambda x, w: jnp.sum(jnp.tanh(f(x, w)) * c)

    value, grads = jax.jit(jax.value_and_grad(loss(mul), argnums=(0, 1)))(x, w)
    ref_value, ref_grads = jax.value_and_grad(loss(jnp.multiply), argnums=(0, 1))(x, w)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    for g, r in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-5, atol=1e-7)


@interpreter_only
def test_autotune_and_heuristics_in_interpreter():
    x = rng_normal(10, (256,))
    out = jax.ShapeDtypeStruct(x.shape, x.dtype)
    grid = lambda m: (triton.cdiv(x.size, m["BLOCK"]),)
    y = triton_call(x, x.size, kernel=tuned_scale_kernel, out_shape=out, grid=grid)  # first config: BLOCK=64
    np.testing.assert_allclose(np.asarray(y), 2 * np.asarray(x))
    x2 = rng_normal(11, (200,))  # not a multiple of BLOCK: the masked branch
    y2 = triton_call(
        x2,
        x2.size,
        kernel=tuned_scale_kernel,
        out_shape=jax.ShapeDtypeStruct((200,), x2.dtype),
        grid=lambda m: (triton.cdiv(200, m["BLOCK"]),),
        BLOCK=256,
    )
    np.testing.assert_allclose(np.asarray(y2), 2 * np.asarray(x2))


@interpreter_only
def test_plain_triton_jit_kernel_runs_in_interpreter():
    plain = triton.jit(add_kernel.fn)
    x, y = rng_normal(12, (100,)), rng_normal(13, (100,))
    out = triton_call(
        x, y, 100, kernel=plain, out_shape=jax.ShapeDtypeStruct((100,), jnp.float32), grid=(1,), BLOCK=128
    )
    np.testing.assert_allclose(np.asarray(out), np.asarray(x + y), rtol=1e-6)


def test_backend_resolution(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv(tc.INTERPRET_ENV, "1")
    assert tc.resolve_backend() == "interpret"
    monkeypatch.delenv(tc.INTERPRET_ENV)
    expected = "gpu" if jax.default_backend() == "gpu" else "interpret"
    assert tc.resolve_backend() == expected
    assert tc.resolve_backend("gpu") == "gpu"
    with pytest.raises(ValueError, match="backend must be"):
        tc.resolve_backend("cuda")


def test_gpu_backend_without_jax_triton_names_the_extra():
    try:
        import jax_triton  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("jax-triton is installed")
    x = jnp.ones(8)
    with pytest.raises(ImportError, match=r"\[gpu\]"):
        add(x, x, backend="gpu")


def test_argument_errors():
    x = jnp.ones(8)
    f32 = jax.ShapeDtypeStruct((8,), jnp.float32)
    with pytest.raises(ValueError, match="parameters without an operand"):
        triton_call(x, x, 8, kernel=add_kernel, out_shape=(f32, f32), grid=(1,), BLOCK=8)
    with pytest.raises(ValueError, match="input_output_aliases"):
        triton_call(
            x,
            x,
            8,
            kernel=add_kernel,
            out_shape=jax.ShapeDtypeStruct((8,), jnp.int32),
            grid=(1,),
            input_output_aliases={0: 0},
            BLOCK=8,
        )


@interpreter_only
def test_interpreter_leaves_triton_language_untouched():
    """Compiling for a GPU later in the same process must see Triton's own builtins, not the interpreter's."""
    spaces = (tl, tl.core, tl.math, tl.core.tensor)
    before = [dict(vars(ns)) for ns in spaces]
    x = np.ones((8, 32), ml_dtypes.bfloat16)
    outs = [
        np.zeros(s, d)
        for s, d in [((8, 32), x.dtype)] + [((8,), x.dtype)] * 2 + [((8, 32), x.dtype), ((8, 32), np.int32)]
    ]
    for _ in range(2):  # twice: the interpreter's cached rewritten functions must still find their globals
        tc.interpret_kernel(bf16_ops_kernel, (1,), x, *outs, R=8, C=32)
        np.testing.assert_array_equal(outs[1], np.ones(8, x.dtype))
    for ns, old in zip(spaces, before, strict=True):
        changed = [k for k, v in vars(ns).items() if k in old and old[k] is not v]
        added = [k for k in vars(ns) if k not in old] if isinstance(ns, type) else []
        assert not changed and not added, (ns, changed, added)
    with pytest.raises(RuntimeError, match="outside of the scope of a kernel"):
        add_kernel(1, 2, 3, 4, 5)  # outside an interpreted launch, jit functions behave as in Triton


@jit
def cast_kernel(x_ptr, n, out_ptr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask).to(tl.bfloat16), mask=mask)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_fp32_to_bf16_cast_rounds_to_nearest_even(backend):
    """The interpreter truncates fp32 -> bf16; the bridge rounds to nearest even like a GPU (and ml_dtypes)."""
    x = np.array([1.005859375, 0.1, -0.1, 1.0 + 2**-8, 1.0 + 3 * 2**-9, 3.0e38, 1e-40], np.float32)
    y = triton_call(
        jnp.asarray(x), x.size, kernel=cast_kernel, out_shape=jax.ShapeDtypeStruct(x.shape, jnp.bfloat16),
        grid=(1,), BLOCK=8, backend=backend,
    )  # fmt: skip
    np.testing.assert_array_equal(np.asarray(y).view(np.uint16), x.astype(ml_dtypes.bfloat16).view(np.uint16))


# ----------------------------------------------------------------------------------------------- jax-triton binding


class _FakeJaxTriton:
    """Stands in for the jax_triton module: records what triton_call hands to jax_triton.triton_call."""

    def __init__(self):
        self.calls = []

    def triton_call(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        out = kwargs["out_type"] if "out_type" in kwargs else kwargs["out_shape"]
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), out)


@jit
def out_first_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    """An output parameter before a scalar operand (passed by keyword)."""
    offs = tl.arange(0, BLOCK)
    tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)


def _multi_call(out_shape=None, **kw):
    """multi_kernel through backend="gpu": operands x, acc, n, alpha (float), beta (np.float32)."""
    f32 = jax.ShapeDtypeStruct((300,), jnp.float32)
    x = jnp.ones(300)
    return triton_call(
        x, x, 300, 2.5, np.float32(-1.0), kernel=multi_kernel, grid=lambda meta: (triton.cdiv(300, meta["BLOCK"]),),
        out_shape=out_shape or (f32, f32, jax.ShapeDtypeStruct((1,), jnp.int32)), BLOCK=64, backend="gpu", **kw,
    )  # fmt: skip


def test_binding_for_jax_triton_0_4(monkeypatch):
    """jax-triton >= 0.4: operands as given (Python scalars), out_type, metaparams and options passed through."""
    fake = _FakeJaxTriton()
    monkeypatch.setattr(triton_gpu, "_jax_triton", lambda: (fake, (0, 4)))
    _multi_call(zeroed_outputs=(2,))
    (args, kw), = fake.calls  # fmt: skip
    assert [type(a).__name__ for a in args[2:]] == ["int", "float", "float"] and args[2:] == (300, 2.5, -1.0)
    assert "out_type" in kw and "out_shape" not in kw and kw["BLOCK"] == 64 and kw["zeroed_outputs"] == (2,)
    assert kw["grid"]({"BLOCK": 64}) == (5,)
    a = jnp.ones((20, 16), jnp.float32)
    matmul(a, a.T, jnp.float32, backend="gpu")
    _, kw = fake.calls[-1]
    assert (kw["BM"], kw["BN"], kw["BK"]) == (16, 16, 16) and "INPUT_PRECISION" not in kw  # defaults: jax-triton's


def test_binding_for_jax_triton_0_3(monkeypatch):
    """jax-triton 0.3 (triton 3.6): positional operands, fp32 floats as np.float32 (0.3 types a Python float as
    fp64), only the kernel's constexprs as metaparams (defaults included), grid/zeroed callables see all of ours."""
    fake = _FakeJaxTriton()
    monkeypatch.setattr(triton_gpu, "_jax_triton", lambda: (fake, (0, 3)))
    _multi_call(zeroed_outputs=lambda meta: [2] if meta["EXTRA"] == 1 else [], EXTRA=1)
    (args, kw), = fake.calls  # fmt: skip
    assert args[2] == 300 and all(type(a) is np.float32 for a in args[3:]) and args[3:] == (2.5, -1.0)
    assert "out_shape" in kw and "out_type" not in kw and kw["enable_fp_fusion"] is True
    assert {k for k in kw if k.isupper()} == {"BLOCK"}  # EXTRA is not a kernel parameter: not a metaparam
    assert kw["grid"]({"BLOCK": 64}) == (5,) and list(kw["zeroed_outputs"]({"BLOCK": 64})) == [2]
    a = jnp.ones((20, 16), jnp.float32)
    matmul(a, a.T, jnp.float32, backend="gpu")
    _, kw = fake.calls[-1]
    assert (kw["BM"], kw["BN"], kw["BK"], kw["INPUT_PRECISION"]) == (16, 16, 16, "ieee")
    assert (
        triton_gpu._legacy_scalar(1e-300) == 1e-300 and type(triton_gpu._legacy_scalar(1e-300)) is float
    )  # fp64 when fp32 can't
    with pytest.raises(NotImplementedError, match="input_output_aliases needs jax-triton >= 0.4"):
        f32 = jax.ShapeDtypeStruct((300,), jnp.float32)
        _multi_call(out_shape=(f32, f32, f32, jax.ShapeDtypeStruct((1,), jnp.int32)), input_output_aliases={1: 0})
    with pytest.raises(NotImplementedError, match="operands must be the kernel's first parameters"):
        triton_call(jnp.ones(8), n=8, kernel=out_first_kernel, out_shape=jax.ShapeDtypeStruct((8,), jnp.float32),
                    grid=(1,), BLOCK=8, backend="gpu")  # fmt: skip
    with pytest.raises(NotImplementedError, match=r"backend_options \['maxnreg'\] need jax-triton >= 0.4"):
        _multi_call(backend_options={"maxnreg": 128})
