"""experiments/quantization/config.py trains the float model exactly as experiments/mnist1d/config.py:mlp,defaults
(its docstring says so, and the study's fp32 numbers are that table's `defaults` MLP runs)."""

import inspect

from jaxdl.ablate import _load_module
from jaxdl.models.basic import mlp

# keys that do not change training: how often it evaluates, checkpoints and draws a progress bar
NOT_TRAINING = {"train.eval_every", "train.checkpoint_every", "train.progress"}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def _training_settings(path: str, arg: str) -> dict:
    """The config's flattened keys, with the model's unset arguments at the mlp's defaults."""
    c = _load_module(path).get_config(arg).to_dict()
    params = inspect.signature(mlp.Model.__init__).parameters.values()
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty and p.name != "rngs"}
    c["model"] = defaults | c["model"]
    return {k: v for k, v in _flat(c).items() if k not in NOT_TRAINING}


def test_quantization_float_model_is_the_mnist1d_defaults_mlp():
    quant = _training_settings("experiments/quantization/config.py", "mlp")
    mnist1d = _training_settings("experiments/mnist1d/config.py", "mlp,defaults")
    assert quant == mnist1d, {k: (quant.get(k), mnist1d.get(k)) for k in quant.keys() | mnist1d.keys() if quant.get(k) != mnist1d.get(k)}  # fmt: skip
    assert quant["model.name"] == "mlp" and quant["model.init"] == "flax" and quant["model.residual"] is False
    assert quant["train.steps"] == 6000 and quant["seed"] == 0 and quant["data.order"] == "shuffle"
