"""Model compression: post-training quantization and quantization-aware training (`quantize`).

The quantized dense layer itself (fake quantization, int8/int4 inference form) is `jaxdl.layers.quantized`.
"""

from jaxdl.compress.quantize import (
    calibrate,
    convert_checkpoint,
    load_quantized,
    quantize_model,
    quantize_params,
    restore_float,
    tree_bytes,
    weight_bytes,
)

__all__ = [
    "calibrate",
    "convert_checkpoint",
    "load_quantized",
    "quantize_model",
    "quantize_params",
    "restore_float",
    "tree_bytes",
    "weight_bytes",
]
