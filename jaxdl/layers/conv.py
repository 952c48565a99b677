"""The one 2-D convolution constructor of the conv models (ResNet, MobileNetV2, the detection backbone, the
generative encoders / U-Net, AlphaZero's policy-value net): SAME padding, a partitioned kernel, optional groups.

`conv2d(cin, cout, kernel, stride)` → nnx.Conv mapping [b, h, w, cin] → [b, ceil(h/stride), ceil(w/stride), cout].
The kernel carries logical axes (None, None, "embed", "mlp"); a grouped (e.g. depthwise) kernel has no input axis
to shard, so (None, None, None, "mlp"). `init`: "kaiming" (He normal, for ReLU stacks) or "lecun" (LeCun normal).
"""

from flax import nnx

from jaxdl.layers.dtypes import to_dtype

INITS = {"kaiming": nnx.initializers.kaiming_normal, "lecun": nnx.initializers.lecun_normal}


def conv2d(
    cin: int,
    cout: int,
    kernel: int = 3,
    stride: int = 1,
    *,
    groups: int = 1,
    bias: bool = False,
    init: str = "kaiming",
    bias_init=None,
    dtype: str | None = None,
    param_dtype: str = "float32",
    rngs: nnx.Rngs,
) -> nnx.Conv:
    """A SAME-padded square conv; `dtype=None` computes in the inputs' dtype (nnx's default)."""
    if init not in INITS:
        raise ValueError(f"conv2d: unknown init {init!r}; expected one of {sorted(INITS)}")
    axes = (None, None, None, "mlp") if groups > 1 else (None, None, "embed", "mlp")
    return nnx.Conv(
        cin,
        cout,
        kernel_size=(kernel, kernel),
        strides=(stride, stride),
        padding="SAME",
        feature_group_count=groups,
        use_bias=bias,
        kernel_init=nnx.with_partitioning(INITS[init](), axes),
        bias_init=bias_init or nnx.initializers.zeros_init(),
        dtype=None if dtype is None else to_dtype(dtype),
        param_dtype=to_dtype(param_dtype),
        rngs=rngs,
    )
