"""The GPU launch path of `kernels.triton_call.triton_call`: jax-triton 0.4.x and 0.3.x calling conventions."""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import warnings
from typing import Any

import jax
import numpy as np

from kernels.triton_call import _python_scalar, _unwrap_kernel


def _jax_triton() -> tuple[Any, tuple[int, int]]:
    """(the jax_triton module, its (major, minor) version); ImportError naming the extra when it is missing."""
    try:
        import jax_triton
    except ImportError as e:
        raise ImportError(
            "triton_call on a GPU needs jax-triton: pip install -e '.[gpu]' (or set JAXDL_TRITON_INTERPRET=1 / "
            "backend='interpret' to run the kernel in Triton's interpreter)"
        ) from e
    version = tuple(int(p) for p in importlib.metadata.version("jax-triton").split(".")[:2] if p.isdigit())
    if version < (0, 3):
        raise ImportError(
            f"triton_call needs jax-triton >= 0.3.1 (triton 3.6) or >= 0.4 (triton >= 3.7), found "
            f"{'.'.join(map(str, version))}"
        )
    _fix_dce_rule(jax_triton)
    return jax_triton, version


@functools.cache
def _fix_dce_rule(jax_triton) -> None:
    """Adapt jax-triton's dead-code-elimination rule to JAX's rule signature, if they disagree.

    jax-triton 0.4.1 registers ``rule(used_outs, eqn)``; JAX 0.12 calls ``rule(used_outs, live_ins, eqn)``, so any
    ``jax.jit`` of a ``triton_call`` fails at lowering with "takes 2 positional arguments but 3 were given".
    Only touches jax-triton's own primitive, and only when its rule has the two-argument form.
    """
    try:
        from jax._src.interpreters import partial_eval as pe

        prim = jax_triton.triton_lib.triton_kernel_call_p
        rule = pe.dce_rules.get(prim)
        if rule is None or len(inspect.signature(rule).parameters) != 2:
            return
        if len(inspect.signature(pe.dce_rules.get(jax.lax.cond_p, rule)).parameters) != 3:
            return  # this JAX still uses the two-argument form
    except (AttributeError, ImportError, TypeError, ValueError):
        return
    pe.dce_rules[prim] = lambda used_outs, live_ins, eqn: rule(used_outs, eqn)


def _gpu_call(
    args,
    kwargs,
    *,
    kernel,
    out_shape,
    grid,
    name,
    num_warps,
    num_stages,
    aliases,
    zeroed,
    debug,
    options,
    operands,
    operand_order,
    operand_params,
    constexprs,
    metaparams,
):
    from triton.runtime.interpreter import InterpretedFunction

    jt, version = _jax_triton()
    if isinstance(_unwrap_kernel(kernel)[2], InterpretedFunction):
        raise TypeError(
            "this kernel was decorated by triton.jit while TRITON_INTERPRET=1, so it cannot be compiled; decorate it "
            "with kernels.triton_call.jit (which keeps both versions) or unset TRITON_INTERPRET"
        )
    if version < (0, 4):
        return _gpu_call_v03(
            jt, kernel=kernel, out_shape=out_shape, grid=grid, name=name, num_warps=num_warps,
            num_stages=num_stages, aliases=aliases, zeroed=zeroed, debug=debug, options=options, operands=operands,
            operand_order=operand_order, operand_params=operand_params, constexprs=constexprs,
            metaparams=metaparams,
        )  # fmt: skip
    call_kwargs: dict[str, Any] = dict(kwargs)
    if aliases:
        call_kwargs["input_output_aliases"] = dict(aliases)
    if zeroed:
        call_kwargs["zeroed_outputs"] = zeroed
    if options:
        call_kwargs["backend_options"] = dict(options)
    with warnings.catch_warnings():
        # jax-triton 0.4 deprecates these two in favour of jax.Ref arguments; they are part of this API.
        warnings.filterwarnings("ignore", message="(input_output_aliases|zeroed_outputs) is deprecated")
        return jt.triton_call(
            *args,
            kernel=kernel,
            out_type=out_shape,
            grid=grid,
            name=name,
            num_warps=num_warps,
            num_stages=num_stages,
            debug=debug,
            **call_kwargs,
        )


def _gpu_call_v03(
    jt,
    *,
    kernel,
    out_shape,
    grid,
    name,
    num_warps,
    num_stages,
    aliases,
    zeroed,
    debug,
    options,
    operands,
    operand_order,
    operand_params,
    constexprs,
    metaparams,
):
    """The launch through jax-triton 0.3.x (the version for triton 3.6, e.g. jax 0.11 GPU images).

    Its conventions differ from 0.4's: every operand is positional (outputs follow them as the last parameters),
    only the kernel's constexprs may be passed as metaparams (the grid/zeroed callables get all of ours), a Python
    float would be typed fp64 (so fp32-representable floats go as ``np.float32``, as 0.4 types them), options are
    keywords, and an aliased output keeps a parameter of its own (not supported here: our kernels use none).
    """
    if aliases:
        raise NotImplementedError(
            "input_output_aliases needs jax-triton >= 0.4 (triton >= 3.7): jax-triton 0.3 gives an aliased output a "
            "kernel parameter of its own"
        )
    unknown = set(options or {}) - {"enable_fp_fusion"}
    if unknown:
        raise NotImplementedError(f"backend_options {sorted(unknown)} need jax-triton >= 0.4")
    if operand_order != operand_params[: len(operand_order)]:
        raise NotImplementedError(
            f"with jax-triton 0.3 the operands must be the kernel's first parameters (outputs last): {operand_order}"
        )
    grid_fn = grid
    if callable(grid):
        grid_fn = lambda meta: grid({**metaparams, **meta})  # noqa: E731
    zeroed_fn = zeroed
    if callable(zeroed):
        zeroed_fn = lambda meta: zeroed({**metaparams, **meta})  # noqa: E731
    positional = [_legacy_scalar(operands[n]) for n in operand_order]
    return jt.triton_call(
        *positional,
        kernel=kernel,
        out_shape=out_shape,
        grid=grid_fn,
        name=name,
        num_warps=num_warps,
        num_stages=num_stages,
        zeroed_outputs=zeroed_fn,
        debug=debug,
        enable_fp_fusion=bool((options or {}).get("enable_fp_fusion", True)),
        **constexprs,  # with the kernel's constexpr defaults: jax-triton 0.3 does not fill those in
    )


def _legacy_scalar(value: Any) -> Any:
    """jax-triton 0.3 types a Python float as fp64 and an ``np.float32`` as fp32: use fp32 when it loses no range."""
    value = _python_scalar(value)
    if isinstance(value, float):
        fi = np.finfo(np.float32)
        if not np.isfinite(value) or value == 0.0 or fi.tiny <= abs(value) <= fi.max:
            return np.float32(value)
    return value


# ---------------------------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------------------------
