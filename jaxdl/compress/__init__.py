"""Model compression: post-training quantization and quantization-aware training (`quantize`), magnitude pruning
(`prune`: one-shot / gradual, global / per layer, as an optax transformation), structured pruning of MLP units
into a smaller dense model (`structured`).

The quantized dense layer itself (fake quantization, int8/int4 inference form) is `jaxdl.layers.quantized`.
"""

from jaxdl.compress.prune import cubic_schedule, magnitude_prune, prune_params, sparsity_report
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
from jaxdl.compress.structured import prune_mlp, unit_importance

__all__ = [
    "calibrate",
    "convert_checkpoint",
    "cubic_schedule",
    "magnitude_prune",
    "prune_mlp",
    "prune_params",
    "sparsity_report",
    "load_quantized",
    "quantize_model",
    "quantize_params",
    "restore_float",
    "tree_bytes",
    "unit_importance",
    "weight_bytes",
]
