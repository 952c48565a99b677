"""INT8 / INT4 quantized matmuls (W8A8, W8A16, W4A16): `reference` (jnp, the truth), `triton` (+ `triton_kernels`,
`launch_config`), `pallas`, `api`.

Use `kernels.int8_matmul.api`: `w8a8_matmul`, `w8a16_matmul`, `w4a16_matmul` (``impl="auto"|"xla"|"pallas"|
"triton"``) with the weights quantized once by `reference.quantize_per_channel` / `reference.quantize_int4`.
`triton` (which imports Triton) and `pallas` are imported on first use.
"""

from kernels.int8_matmul import reference

__all__ = ["reference"]
