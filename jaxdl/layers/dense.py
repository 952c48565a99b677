"""The partitioned dense layer the models share (and `jaxdl.layers.quantized.make_dense` mirrors)."""

from flax import nnx

from jaxdl.layers.dtypes import to_dtype


def dense(din: int, dout: int, axes: tuple[str, str], *, dtype: str, param_dtype: str, rngs: nnx.Rngs) -> nnx.Linear:
    """nnx.Linear [..., din] -> [..., dout] whose kernel [din, dout] carries the logical axis names `axes` (the
    sharding rules of `jaxdl.parallel.rules` map them to mesh axes); LeCun-normal kernel, zero bias."""
    return nnx.Linear(
        din,
        dout,
        dtype=to_dtype(dtype),
        param_dtype=to_dtype(param_dtype),
        kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), axes),
        rngs=rngs,
    )
