"""Shims that let Triton's interpreter run our kernels from numpy (used by `kernels.triton_call` on CPU).

- `NumpyTensor`: the small torch-like surface the interpreter's launcher expects (`data_ptr()`, `untyped_storage()`,
  `stride()`, `size()`, `new_empty()`, `set_()`, ...), backed by a numpy array.
- `Bf16Values`: a scoped patch making the interpreter compute on bfloat16 values (it stores bf16 as uint16 bits).
- `RestoreLanguage`: undoes the attribute changes the interpreter leaves in `triton.language` after a launch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------------------------------
# A numpy-backed stand-in for the torch tensors Triton's interpreter expects
# ---------------------------------------------------------------------------------------------------------------


class _Storage:
    """The byte buffer behind one or more :class:`NumpyTensor` views (torch's ``untyped_storage()``)."""

    def __init__(self, buf: np.ndarray):
        self.buf = buf  # 1-D uint8, C-contiguous

    def data_ptr(self) -> int:
        return self.buf.__array_interface__["data"][0]

    def nbytes(self) -> int:
        return self.buf.nbytes

    def size(self) -> int:
        return self.buf.size

    def cpu(self) -> _Storage:
        return self  # already host memory: the interpreter then reads and writes the buffer in place

    def copy_(self, other: _Storage) -> _Storage:
        if other.data_ptr() != self.data_ptr():
            np.copyto(self.buf, other.buf)
        return self


class NumpyTensor:
    """A torch-like view of a C-contiguous numpy array, enough for ``triton.runtime.interpreter``.

    The interpreter treats any argument with ``data_ptr()`` and ``dtype`` as a pointer; it maps ``dtype`` through
    ``str(dtype)`` (``float32`` → ``fp32``, ml_dtypes ``bfloat16`` → ``bf16``, ``float8_e4m3fn`` → ``fp8e4nv``, ...)
    and reads and writes the memory at ``data_ptr()`` directly, so the wrapped array is updated in place.
    Strides and offsets are in elements, as in torch.
    """

    device = "cpu"
    is_cuda = False

    def __init__(self, array: np.ndarray):
        if not isinstance(array, np.ndarray) or not array.flags.c_contiguous or not array.flags.writeable:
            raise ValueError("NumpyTensor wraps a writeable C-contiguous numpy array (use np.array(x, copy=True))")
        self._array = array
        self._storage = _Storage(array.reshape(-1).view(np.uint8))
        self._offset = 0

    # Data.
    def numpy(self) -> np.ndarray:
        return self._array

    @property
    def data(self) -> NumpyTensor:  # triton.reinterpret's TensorWrapper reads `.data`
        return self

    @property
    def dtype(self) -> np.dtype:
        return self._array.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self._array.shape

    @property
    def ndim(self) -> int:
        return self._array.ndim

    def data_ptr(self) -> int:
        return self._storage.data_ptr() + self._offset * self._array.itemsize

    def untyped_storage(self) -> _Storage:
        return self._storage

    def storage_offset(self) -> int:
        return self._offset

    def size(self, dim: int | None = None):
        return self._array.shape if dim is None else self._array.shape[dim]

    def stride(self, dim: int | None = None):
        strides = tuple(s // self._array.itemsize for s in self._array.strides)
        return strides if dim is None else strides[dim]

    def dim(self) -> int:
        return self._array.ndim

    def numel(self) -> int:
        return self._array.size

    def element_size(self) -> int:
        return self._array.itemsize

    def is_contiguous(self) -> bool:
        return self._array.flags.c_contiguous

    # What the interpreter's host-copy step calls (`GridExecutor._init_args_hst` / `_restore_args_dev`).
    def cpu(self) -> NumpyTensor:
        return self

    def new_empty(self, *size, dtype=None, device=None) -> NumpyTensor:
        if len(size) == 1 and isinstance(size[0], (tuple, list)):
            size = tuple(size[0])
        return NumpyTensor(np.empty(size, dtype=self.dtype if dtype is None else dtype))

    def set_(self, storage: _Storage, offset: int = 0, size=None, stride=None) -> NumpyTensor:
        """Become a view of ``storage`` (shared memory, like torch's ``Tensor.set_``)."""
        item = self._array.itemsize
        size = tuple(size) if size is not None else (storage.nbytes() // item - offset,)
        if stride is None:
            stride = tuple(int(np.prod(size[i + 1 :], dtype=np.int64)) for i in range(len(size)))
        self._array = np.ndarray(
            shape=size, dtype=self.dtype, buffer=storage.buf, offset=offset * item, strides=[s * item for s in stride]
        )
        self._storage, self._offset = storage, int(offset)
        return self

    def copy_(self, other: NumpyTensor) -> NumpyTensor:
        if other.data_ptr() != self.data_ptr():
            np.copyto(self._array, other.numpy())
        return self

    def __repr__(self) -> str:
        return f"NumpyTensor(shape={self.shape}, dtype={self.dtype})"


class Bf16Values:
    """Make Triton's interpreter compute on bfloat16 *values* (a scoped patch, active only inside our launches).

    The interpreter stores bf16 tensors as their uint16 bit patterns and runs numpy on that storage, so a bf16
    ``tl.dot``, arithmetic, comparisons, ``tl.max``/``tl.sum`` and casts to non-fp32 types compute on bit patterns
    (triton-lang/triton#11584: "we just don't support it yet"; #10945 was not merged). While a kernel runs, this
    wraps those entry points of the interpreter's builder, and the numpy fast paths of its reductions and scans, to
    widen bf16 operands exactly to fp32, compute, and round results back to bf16 (round-to-nearest-even), which is
    how a GPU computes bf16 elementwise math; casts to bf16 round to nearest even (the interpreter truncates fp32).
    Loads, stores, bitcasts, ``tl.where`` selections and bf16 -> fp32 casts already work on the bits. Skipped entirely if a Triton version stores bf16 otherwise.
    """

    _COMPARISONS = ("less", "less_equal", "greater", "greater_equal", "equal", "not_equal")
    # builder method -> index of the handle argument whose dtype the result takes
    _FOLLOWS = {"unary_op": 0, "ternary_op": 2, "create_fma": 2, "create_dot": 2, "create_erf": 0, "create_rsqrt": 0}

    def __init__(self):
        import triton.language as tl
        import triton.runtime.interpreter as interp

        self.tl, self.interp = tl, interp
        self.active = np.dtype(interp._get_np_dtype(tl.bfloat16)) == np.dtype(np.uint16)
        self.saved: list[tuple[Any, str, Any, bool]] = []

    # Conversions between the interpreter's bf16 storage (uint16 bits) and fp32 values.
    def is_bf16(self, h) -> bool:
        return isinstance(h, self.interp.TensorHandle) and getattr(h.dtype, "scalar", h.dtype) == self.tl.bfloat16

    def widen(self, h):
        data = (np.asarray(h.data).astype(np.uint32) << np.uint32(16)).view(np.float32)
        return self.interp.TensorHandle(data, self.tl.float32)

    def narrow(self, data) -> np.ndarray:
        import ml_dtypes

        return np.asarray(data, np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)

    def widen_tensor(self, t):
        tl = self.tl
        ty = tl.block_type(tl.float32, list(t.shape)) if t.type.is_block() else tl.float32
        return tl.core.tensor(self.widen(t.handle), ty)

    def narrow_tensor(self, t):
        tl = self.tl
        if not isinstance(t, tl.core.tensor) or t.dtype != tl.float32:
            return t
        ty = tl.block_type(tl.bfloat16, list(t.shape)) if t.type.is_block() else tl.bfloat16
        return tl.core.tensor(self.interp.TensorHandle(self.narrow(t.handle.data), tl.bfloat16), ty)

    # Wrappers.
    def _wrap_builder(self, name, original):
        follows = self._FOLLOWS.get(name)

        def wrapped(*args, **kwargs):
            if not any(self.is_bf16(a) for a in args) or (name == "ternary_op" and args[3] is np.where):
                return original(*args, **kwargs)  # tl.where selects bits: nothing to convert
            out_bf16 = follows is not None and self.is_bf16(args[follows])
            out = original(*[self.widen(a) if self.is_bf16(a) else a for a in args], **kwargs)
            if out_bf16 and out.dtype == self.tl.float32:
                out = self.interp.TensorHandle(self.narrow(out.data), self.tl.bfloat16)
            return out

        return wrapped

    def _binary_op(self, original):
        def binary_op(lhs, rhs, op):
            if not (self.is_bf16(lhs) or self.is_bf16(rhs)):
                return original(lhs, rhs, op)
            out = original(
                self.widen(lhs) if self.is_bf16(lhs) else lhs, self.widen(rhs) if self.is_bf16(rhs) else rhs, op
            )
            if not self.is_bf16(lhs):
                return out
            if getattr(op, "__name__", "") in self._COMPARISONS:  # a boolean result, typed as such
                return self.interp.TensorHandle(np.asarray(out.data).astype(np.bool_), self.tl.int1)
            return self.interp.TensorHandle(self.narrow(out.data), self.tl.bfloat16)

        return binary_op

    def _cast_impl(self, original):
        tl = self.tl

        def cast_impl(src, dst_type):
            src_bf16, dst_bf16 = src.dtype.scalar == tl.bfloat16, dst_type.scalar == tl.bfloat16
            if src_bf16 and not dst_bf16 and dst_type.scalar != tl.float32:
                return original(self.widen(src), dst_type)
            if dst_bf16 and not src_bf16:  # round to nearest even, as a GPU does (the interpreter truncates)
                wide = src if src.dtype.scalar == tl.float32 else original(src, tl.float32)
                return self.interp.TensorHandle(self.narrow(wide.data), tl.bfloat16)
            return original(src, dst_type)

        return cast_impl

    def _fast_path(self, original):
        def fast_path(op_self, input, *args, **kwargs):
            if not (isinstance(input, self.tl.core.tensor) and input.dtype == self.tl.bfloat16):
                return original(op_self, input, *args, **kwargs)
            out = original(op_self, self.widen_tensor(input), *args, **kwargs)
            if isinstance(out, (tuple, list)):
                return type(out)(self.narrow_tensor(o) if i == 0 else o for i, o in enumerate(out))
            return self.narrow_tensor(out)

        return fast_path

    def _set(self, obj, name, value, instance: bool):
        self.saved.append((obj, name, getattr(obj, name, None), instance))
        setattr(obj, name, value)

    def __enter__(self):
        if not self.active:
            return self
        builder = self.interp.interpreter_builder
        for name in self._FOLLOWS:
            if hasattr(builder, name):
                self._set(builder, name, self._wrap_builder(name, getattr(builder, name)), True)
        if not hasattr(builder, "get_bf16"):  # Triton < 3.9: bf16 scalar constants (`x_bf16 > 0`) were missing
            tl, interp = self.tl, self.interp
            get_bf16 = lambda value: interp.TensorHandle(self.narrow(np.array([value], np.float32)), tl.bfloat16)
            self._set(builder, "get_bf16", get_bf16, True)
        self._set(builder, "binary_op", self._binary_op(builder.binary_op), True)
        self._set(builder, "cast_impl", self._cast_impl(builder.cast_impl), True)
        # Reductions/scans: only the numpy fast paths (the generic ones call the combine function -> binary_op).
        # Note that `tl.cumsum` on bf16 then rounds its result once, where a GPU scan rounds at every step.
        for cls_name, methods in (("ReduceOps", ("min_max", "sum")), ("ScanOps", ("cumsum", "cumprod"))):
            cls = getattr(self.interp, cls_name, None)
            for m in methods:
                if cls is not None and m in vars(cls):
                    self._set(cls, m, self._fast_path(vars(cls)[m]), False)
        return self

    def __exit__(self, *exc):
        while self.saved:
            obj, name, value, instance = self.saved.pop()
            if instance:
                delattr(obj, name)  # back to the class attribute
            else:
                setattr(obj, name, value)


class RestoreLanguage:
    """Undo every attribute change the interpreter makes to ``triton.language`` during one launch.

    ``GridExecutor`` restores what it patches for the kernel itself (Triton >= 3.6), but a device function called
    from the kernel (``InterpretedFunction.__call__``, e.g. for ``tl.zeros``/``tl.sum``, whose module sees
    ``triton.language.core``) patches ``triton.language.core`` and ``tensor`` without restoring them, which would
    leave the compiler of a later GPU launch in this process calling interpreter builtins. This snapshots the
    namespaces the interpreter patches and restores them afterwards. Names the interpreter adds to a module's
    globals (``interpreter_semantic``, ... which its rewritten, cached functions look up) are kept.
    """

    def __init__(self):
        import triton.language as tl

        core = tl.core
        candidates = [tl, core, getattr(tl, "math", None), getattr(tl, "standard", None), core.tensor, core.dtype]
        candidates += [getattr(core, n, None) for n in ("tensor_descriptor_base", "condition")]
        candidates += [getattr(tl, n, None) for n in ("condition",)]
        self.objects = list({id(o): o for o in candidates if o is not None}.values())

    def __enter__(self):
        self.saved = [(obj, dict(vars(obj))) for obj in self.objects]
        return self

    def __exit__(self, *exc):
        for obj, before in self.saved:
            now = vars(obj)
            if isinstance(obj, type):  # attributes a patch added to a class go; names added to a module stay (the
                for key in [k for k in now if k not in before]:  # interpreter's rewritten functions use them)
                    delattr(obj, key)
            for key, value in before.items():
                if now.get(key, _MISSING) is not value:
                    setattr(obj, key, value)


_MISSING = object()
