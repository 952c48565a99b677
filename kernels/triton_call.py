"""Call a Triton kernel from JAX; one kernel source runs on GPU (jax-triton) and on CPU (Triton's interpreter).

Write the kernel once with :func:`jit` (instead of ``triton.jit``) and launch it with :func:`triton_call`, whose
signature mirrors ``jax_triton.triton_call`` (0.4 conventions; jax-triton 0.3.1, for triton 3.6, works too)::

    @jit
    def scale_kernel(x_ptr, n, alpha, y_ptr, BLOCK: tl.constexpr):  # inputs (arrays, scalars), then outputs
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=offs < n) * alpha, mask=offs < n)

    y = triton_call(x, x.size, 2.0, kernel=scale_kernel, out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype),
                    grid=lambda meta: (triton.cdiv(x.size, meta["BLOCK"]),), BLOCK=128)

``backend="auto"``: ``JAXDL_TRITON_INTERPRET=1`` (or ``TRITON_INTERPRET=1``) forces the interpreter; else a GPU
backend launches through jax-triton (the ``[gpu]`` extra), anything else runs the interpreter in a
``jax.pure_callback`` (tests; composes with jit, custom_vjp and checkpoint, not vmap). See `kernels/README.md`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from kernels.triton_interpreter import Bf16Values, NumpyTensor, RestoreLanguage

__all__ = [
    "NumpyTensor",
    "interpret_enabled",
    "interpret_kernel",
    "jit",
    "resolve_backend",
    "triton_call",
]

INTERPRET_ENV = "JAXDL_TRITON_INTERPRET"
_TRUE = ("1", "true", "yes", "on")
_GPU_PLATFORMS = ("gpu", "cuda", "rocm")

# Triton's interpreter patches `triton.language` module attributes while a kernel runs and keeps its grid position
# in a module-level builder, so only one interpreted launch may run at a time in a process.
_INTERPRETER_LOCK = threading.RLock()
_STATE = threading.local()


# ---------------------------------------------------------------------------------------------------------------
# Backend selection
# ---------------------------------------------------------------------------------------------------------------


def interpret_enabled() -> bool:
    """True when the environment forces the interpreter: ``JAXDL_TRITON_INTERPRET=1`` or ``TRITON_INTERPRET=1``.

    Read at call time (not at import or decoration time), so it can be set at any point before a call is traced.
    """
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in (INTERPRET_ENV, "TRITON_INTERPRET"))


def resolve_backend(backend: str = "auto") -> str:
    """``"interpret"`` or ``"gpu"``: what :func:`triton_call` with this ``backend`` argument runs on.

    ``"auto"``: the interpreter when :func:`interpret_enabled`, else ``"gpu"`` when JAX's default backend is a GPU
    (CUDA or ROCm), else the interpreter. This initializes JAX's backends (like any JAX computation would).
    """
    if backend in ("interpret", "gpu"):
        return backend
    if backend != "auto":
        raise ValueError(f"backend must be 'auto', 'interpret' or 'gpu', got {backend!r}")
    if interpret_enabled():
        return "interpret"
    return "gpu" if jax.default_backend() in _GPU_PLATFORMS else "interpret"


# ---------------------------------------------------------------------------------------------------------------
# The decorator, and running jit functions as device functions inside the interpreter
# ---------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _interpreting():
    depth = getattr(_STATE, "depth", 0)
    _STATE.depth = depth + 1
    try:
        yield
    finally:
        _STATE.depth = depth


def jit(fn: Callable | None = None, **triton_jit_kwargs: Any) -> Any:
    """Use instead of ``@triton.jit`` for kernels (and their helpers); independent of ``TRITON_INTERPRET``.

    Returns a plain ``triton.JITFunction`` (what jax-triton compiles; ``triton.autotune``/``triton.heuristics``
    accept it) even when ``TRITON_INTERPRET=1`` is set, where ``triton.jit`` would return an interpreter-only
    ``InterpretedFunction``. Whether the kernel is compiled or interpreted is decided per call by
    :func:`triton_call` (see :func:`resolve_backend`), not at decoration time, so no env variable has to be set
    before import and one process can use both. Keyword arguments (``do_not_specialize``, ``debug``,
    ``noinline``, ...) are those of ``triton.jit``.
    """
    if fn is None:
        return functools.partial(jit, **triton_jit_kwargs)
    from triton.runtime.jit import JITFunction

    return JITFunction(fn, **triton_jit_kwargs)


def _install_interpreter_call_hook() -> None:
    """Let every ``JITFunction`` run as a device function while this thread interprets a kernel.

    Triton decides at decoration time whether a function is compiled (``JITFunction``) or interpreted
    (``InterpretedFunction``, when ``TRITON_INTERPRET=1``). Without the variable, helpers called from an
    interpreted kernel -- the user's own and ``triton.language.standard``'s (``tl.zeros``, ``tl.sum``, ``tl.max``,
    ``tl.cdiv``, ``tl.sigmoid``, ...) -- are ``JITFunction``s whose ``__call__`` only raises "Cannot call
    @triton.jit'd outside of the scope of a kernel". This wraps that ``__call__`` (once, on the first interpreted
    launch) to run the function's interpreted twin while :func:`interpret_kernel` is active on this thread, and to
    behave exactly as before otherwise. The Triton compiler never calls ``JITFunction.__call__`` (it inlines the
    source), so GPU compilation is unaffected.
    """
    from triton.runtime.jit import JITFunction

    original = JITFunction.__call__
    if getattr(original, "_jaxdl_interpreter_hook", False):
        return

    @functools.wraps(original)
    def __call__(self, *args, **kwargs):
        if getattr(_STATE, "depth", 0):
            return _interpreted_function(self)(*args, **kwargs)
        return original(self, *args, **kwargs)

    __call__._jaxdl_interpreter_hook = True
    JITFunction.__call__ = __call__


# ---------------------------------------------------------------------------------------------------------------
# Kernel introspection (shared by both backends)
# ---------------------------------------------------------------------------------------------------------------


def _unwrap_kernel(kernel: Any) -> tuple[Any, Any, Any]:
    """(autotuner or None, heuristics or None, innermost jit function) of a possibly decorated kernel."""
    from triton.runtime.autotuner import Autotuner, Heuristics

    autotuner = heuristics = None
    if isinstance(kernel, Autotuner):
        autotuner, kernel = kernel, kernel.fn
    if isinstance(kernel, Heuristics):
        heuristics, kernel = kernel, kernel.fn
    if not hasattr(kernel, "fn") or not callable(kernel.fn):
        raise TypeError(f"kernel must be a function decorated with kernels.triton_call.jit, got {type(kernel)}")
    return autotuner, heuristics, kernel


def _is_constexpr(annotation: Any) -> bool:
    import triton.language as tl

    if annotation is tl.constexpr:
        return True
    return isinstance(annotation, str) and annotation.strip().split(".")[-1] == "constexpr"


def _params(fn: Callable) -> list[tuple[inspect.Parameter, bool]]:
    """The kernel's parameters with whether each is ``tl.constexpr``."""
    annotations = inspect.get_annotations(fn)
    return [(p, _is_constexpr(annotations.get(p.name))) for p in inspect.signature(fn).parameters.values()]


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray))


def _normalize_grid(grid: Any, metaparams: Mapping[str, Any]) -> tuple[int, int, int]:
    if callable(grid):
        grid = grid(dict(metaparams))
    if isinstance(grid, (int, np.integer)):
        grid = (grid,)
    grid = tuple(int(g) for g in grid)
    if not 1 <= len(grid) <= 3:
        raise ValueError(f"grid must have 1 to 3 dimensions, got {grid}")
    return grid + (1,) * (3 - len(grid))


# ---------------------------------------------------------------------------------------------------------------
# Interpreter launch
# ---------------------------------------------------------------------------------------------------------------


def _interpreted_function(jit_fn: Any) -> Any:
    """The ``InterpretedFunction`` twin of a ``JITFunction`` (built once and kept on it), or ``jit_fn`` itself."""
    from triton.runtime.interpreter import InterpretedFunction

    if isinstance(jit_fn, InterpretedFunction):
        return jit_fn
    twin = jit_fn.__dict__.get("_jaxdl_interpreted")
    if twin is None:
        twin = InterpretedFunction(jit_fn.fn)
        jit_fn.__dict__["_jaxdl_interpreted"] = twin
    return twin


def _python_scalar(value: Any) -> Any:
    """numpy scalars as Python ones (jax-triton types Python scalars; np.float32 is deprecated there)."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _scalar_arg(value: Any) -> Any:
    """A static scalar as the compiled kernel sees it: a float becomes an fp32 (or fp64) scalar tensor.

    Triton and jax-triton (>= 0.4) pass a Python float as fp32 when that loses no range (0, inf, nan, or a normal
    fp32 magnitude), else as fp64. The interpreter alone would keep the Python float, a weakly typed constant that
    promotes differently (``x_bf16 * 0.5`` stays bf16 in the interpreter but is fp32 when compiled).
    Ints and bools are already typed (i32/u32/i64/i1) by the interpreter itself.
    """
    value = _python_scalar(value)
    if not isinstance(value, float):
        return value
    import triton.language as tl
    from triton.runtime.interpreter import TensorHandle

    fi = np.finfo(np.float32)
    fp32 = not np.isfinite(value) or value == 0.0 or fi.tiny <= abs(value) <= fi.max
    tl_type, np_type = (tl.float32, np.float32) if fp32 else (tl.float64, np.float64)
    return tl.tensor(TensorHandle(np.array([value], dtype=np_type), tl_type), tl_type)


def interpret_kernel(kernel: Any, grid: Any, *args: Any, **kwargs: Any) -> None:
    """Run ``kernel`` over ``grid`` in Triton's interpreter on numpy arrays, updating them in place.

    ``args``/``kwargs`` are the kernel's arguments by position or name: numpy arrays (C-contiguous, writeable) or
    :class:`NumpyTensor` for pointers, Python scalars, and ``constexpr`` values. ``grid`` is a tuple or a callable
    of the named arguments (Triton's convention). Thread-safe (launches are serialized); no JAX involved.
    """
    _, _, jit_fn = _unwrap_kernel(kernel)
    interpreted = _interpreted_function(jit_fn)
    constexprs = {p.name for p, c in _params(jit_fn.fn) if c}
    bound = inspect.signature(jit_fn.fn).bind_partial(*args, **kwargs).arguments

    def convert(name, value):
        if isinstance(value, np.ndarray):
            return NumpyTensor(value)
        if name in constexprs:
            return value
        return _scalar_arg(value)

    named = {name: convert(name, value) for name, value in bound.items()}
    if not callable(grid):
        grid = _normalize_grid(grid, {})
    with _INTERPRETER_LOCK:
        _install_interpreter_call_hook()
        with RestoreLanguage(), _interpreting(), Bf16Values():
            interpreted[grid](**named)


def _fill_unwritten(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An output buffer whose unwritten elements stand out: NaN for floats, the dtype's minimum for integers."""
    if np.issubdtype(dtype, np.integer):
        return np.full(shape, np.iinfo(dtype).min, dtype=dtype)
    if dtype == np.bool_:
        return np.zeros(shape, dtype=dtype)
    return np.full(shape, np.nan, dtype=dtype)


def _interpret_call(
    jit_fn: Any,
    params: list[tuple[inspect.Parameter, bool]],
    operands: dict[str, Any],
    out_params: list[str | None],
    out_shapes: list[jax.ShapeDtypeStruct],
    aliases: dict[str, int],
    grid: Any,
    metaparams: dict[str, Any],
    zeroed: Sequence[int],
    debug: bool,
) -> list[jax.Array]:
    array_names = [n for n, v in operands.items() if _is_array(v)]
    static = {n: v for n, v in operands.items() if not _is_array(v)}
    grid3 = _normalize_grid(grid, metaparams)
    param_names = {p.name for p, _ in params}
    kernel_meta = {k: v for k, v in metaparams.items() if k in param_names}
    zeroed = set(zeroed)

    def callback(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        # Private, writeable, contiguous copies: the kernel may write to aliased inputs, and JAX's buffers must not
        # change under it.
        named: dict[str, Any] = {n: np.array(a, copy=True, order="C") for n, a in zip(array_names, arrays, strict=True)}
        results: list[np.ndarray | None] = [None] * len(out_shapes)
        for name, o in aliases.items():
            if o in zeroed:
                named[name][...] = 0
            results[o] = named[name]
        for o, (name, shape) in enumerate(zip(out_params, out_shapes, strict=True)):
            if name is None:
                continue
            dtype = np.dtype(shape.dtype)
            if o in zeroed:
                buf = np.zeros(shape.shape, dtype)
            elif debug:
                buf = _fill_unwritten(shape.shape, dtype)
            else:
                buf = np.empty(shape.shape, dtype)
            named[name] = results[o] = buf
        named.update(static)
        interpret_kernel(jit_fn, grid3, **named, **kernel_meta)
        return tuple(results)

    outs = jax.pure_callback(callback, list(out_shapes), *(operands[n] for n in array_names))
    # Under jit with sharded operands the callback's results carry a `{maximal device=0}` sharding; returned as is
    # from the jit, Shardy then rejects them in any later computation ("Cannot convert GSPMDSharding {maximal
    # device=0} into SdyArray"). A (semantically no-op) barrier gives them an ordinary sharding.
    return jax.lax.optimization_barrier(list(outs))


# ---------------------------------------------------------------------------------------------------------------
# GPU launch
# ---------------------------------------------------------------------------------------------------------------


def triton_call(
    *args: Any,
    kernel: Any,
    out_shape: Any = None,
    grid: Any,
    num_warps: int = 4,
    num_stages: int = 2,
    input_output_aliases: Mapping[int, int] | None = None,
    zeroed_outputs: Sequence[int] | Callable[[dict], Sequence[int]] = (),
    debug: bool = False,
    backend: str = "auto",
    name: str = "",
    backend_options: Mapping[str, Any] | None = None,
    out_type: Any = None,
    **kwargs: Any,
) -> Any:
    """Launch the Triton ``kernel`` on JAX arrays; returns the outputs with ``out_shape``'s structure.

    Args:
      *args: operands bound to the kernel's parameters in order: JAX (or numpy) arrays become pointers (a 0-d
        array is a pointer too); Python/numpy scalars are static values (ints as i32/i64, floats as fp32 when
        representable, bools as i1) and must not be traced.
      kernel: a function decorated with :func:`jit` or ``triton.jit`` (optionally wrapped by ``triton.heuristics``
        and ``triton.autotune``).
      out_shape: a ``jax.ShapeDtypeStruct`` (or anything with ``shape``/``dtype``) or a pytree of them; one pointer
        per leaf follows the operands (``out_type`` is accepted as a synonym, jax-triton 0.4's name).
      grid: an int, a tuple of up to 3 ints, or ``grid(metaparams) -> tuple``; metaparams include the kernel's
        ``constexpr`` defaults, the autotune config chosen and heuristics values.
      num_warps, num_stages, name, backend_options: GPU compilation options (ignored by the interpreter).
      input_output_aliases: ``{operand index: output index}``; the output is the operand's buffer after the kernel
        ran, and gets no kernel parameter of its own. Operand indices count every non-``constexpr`` operand
        (arrays and scalars) in kernel-parameter order, as jax-triton >= 0.4 does.
      zeroed_outputs: output indices (or ``f(metaparams) -> indices``) zero-filled before the launch (aliased ones
        included); other outputs start uninitialized, as on GPU.
      debug: GPU: print Triton's IRs (jax-triton's flag). Interpreter: fill outputs that are neither zeroed nor
        aliased with NaN (floats) or the dtype's minimum (ints) so unwritten elements show.
      backend: ``"auto"``, ``"interpret"`` or ``"gpu"`` (see :func:`resolve_backend`).
      **kwargs: keywords naming a non-``constexpr`` kernel parameter are operands; all others are metaparams
        (``constexpr`` arguments, or values only ``grid``/``zeroed_outputs`` read).

    Returns:
      One array per leaf of ``out_shape`` (a single array for a single ``ShapeDtypeStruct``).
    """
    if out_type is not None:
        if out_shape is not None:
            raise TypeError("pass out_shape or out_type, not both")
        out_shape = out_type
    if out_shape is None:
        raise TypeError("triton_call needs out_shape")
    is_leaf = lambda x: hasattr(x, "shape") and hasattr(x, "dtype")
    flat_leaves, out_tree = jax.tree.flatten(out_shape, is_leaf=is_leaf)
    out_shapes = [jax.ShapeDtypeStruct(tuple(s.shape), np.dtype(s.dtype)) for s in flat_leaves]
    out_shape = jax.tree.unflatten(out_tree, out_shapes)

    autotuner, heuristics, jit_fn = _unwrap_kernel(kernel)
    params = _params(jit_fn.fn)
    constexpr_names = [p.name for p, c in params if c]
    operand_params = [p.name for p, c in params if not c]

    # Bind operands like jax-triton: positional args in order; keywords naming a runtime parameter are operands.
    metaparams = {p.name: p.default for p, c in params if c and p.default is not inspect.Parameter.empty}
    operand_kwargs = {}
    for key, value in kwargs.items():
        (operand_kwargs if key in operand_params else metaparams)[key] = value
    try:
        bound = inspect.signature(jit_fn.fn).bind_partial(*args, **operand_kwargs).arguments
    except TypeError as e:
        raise TypeError(f"arguments do not match kernel {jit_fn.fn.__name__}{inspect.signature(jit_fn.fn)}: {e}") from e
    operands: dict[str, Any] = {}
    for pname, value in bound.items():
        if pname in constexpr_names:
            metaparams[pname] = value
        elif isinstance(value, (tuple, list, dict)):
            raise NotImplementedError(f"tuple/pytree kernel operands are not supported ({pname})")
        else:
            operands[pname] = value

    aliases_in = dict(input_output_aliases or {})
    if len(set(aliases_in.values())) != len(aliases_in):
        raise ValueError(f"input_output_aliases must map distinct operands to distinct outputs: {aliases_in}")
    operand_order = [n for n in operand_params if n in operands]
    aliases: dict[str, int] = {}
    for i, o in aliases_in.items():
        if not 0 <= i < len(operand_order) or not 0 <= o < len(out_shapes):
            raise ValueError(f"input_output_aliases entry {i}: {o} is out of range")
        src = operands[operand_order[i]]
        if not _is_array(src):
            raise ValueError(f"input_output_aliases: operand {i} ({operand_order[i]}) is not an array")
        if (tuple(src.shape), np.dtype(src.dtype)) != (out_shapes[o].shape, out_shapes[o].dtype):
            raise ValueError(
                f"input_output_aliases: operand {i} is {src.dtype}{list(src.shape)} but output {o} is "
                f"{out_shapes[o].dtype}{list(out_shapes[o].shape)}"
            )
        aliases[operand_order[i]] = o
    free_params = [n for n in operand_params if n not in operands]
    unaliased = [o for o in range(len(out_shapes)) if o not in aliases.values()]
    if len(free_params) != len(unaliased):
        raise ValueError(
            f"kernel {jit_fn.fn.__name__} has {len(free_params)} parameters without an operand ({free_params}) but "
            f"out_shape has {len(unaliased)} outputs that are not aliased to inputs"
        )

    which = resolve_backend(backend)
    if which == "gpu":
        from kernels.triton_gpu import _gpu_call  # the GPU path only (imports jax-triton lazily)

        return _gpu_call(
            [_python_scalar(a) for a in args],
            {k: (_python_scalar(v) if k in operand_kwargs else v) for k, v in kwargs.items()},
            kernel=kernel,
            out_shape=out_shape,
            grid=grid,
            name=name,
            num_warps=num_warps,
            num_stages=num_stages,
            aliases=aliases_in,
            zeroed=zeroed_outputs,
            debug=debug,
            options=backend_options,
            operands=operands,
            operand_order=operand_order,
            operand_params=operand_params,
            constexprs={n: metaparams[n] for n in constexpr_names if n in metaparams},
            metaparams=dict(metaparams),
        )

    # Interpreter: pick the launch configuration at trace time, as jax-triton does when it lowers.
    named_args = {n: (jax.ShapeDtypeStruct(v.shape, v.dtype) if _is_array(v) else v) for n, v in operands.items()} | {
        n: out_shapes[o] for n, o in zip(free_params, unaliased, strict=True)
    }
    if autotuner is not None:
        configs = [c for c in autotuner.configs if all(c.kwargs.get(k, v) == v for k, v in metaparams.items())]
        if getattr(autotuner, "early_config_prune", None) is not None and configs:
            configs = autotuner.early_config_prune(configs, named_args)
        if not configs:
            raise ValueError(f"no autotune config of {jit_fn.fn.__name__} agrees with metaparams {metaparams}")
        if configs[0].pre_hook is not None:
            raise NotImplementedError("autotune configs with pre_hook are not supported")
        metaparams = {**metaparams, **configs[0].kwargs}  # the interpreter does not time: first config wins
    if heuristics is not None:
        for key, heuristic in heuristics.values.items():
            metaparams[key] = heuristic({**named_args, **metaparams})
    zeroed = zeroed_outputs(dict(metaparams)) if callable(zeroed_outputs) else zeroed_outputs
    zeroed = [int(z) for z in zeroed]
    if any(not 0 <= z < len(out_shapes) for z in zeroed):
        raise ValueError(f"zeroed_outputs {zeroed} out of range for {len(out_shapes)} outputs")
    out_params: list[str | None] = [None] * len(out_shapes)
    for n, o in zip(free_params, unaliased, strict=True):
        out_params[o] = n
    flat_out = _interpret_call(
        jit_fn, params, operands, out_params, out_shapes, aliases, grid, metaparams, zeroed, debug
    )
    return jax.tree.unflatten(out_tree, list(flat_out))
