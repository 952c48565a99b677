"""Hugging Face GPT-2 checkpoints <-> `jaxdl.models.language.gpt.Model`, exactly (slices, concatenations and
reshapes only).

GPT-2 is our `gpt` with positions="learned" (max_len = n_positions), norm="layer" with norm_eps =
layer_norm_epsilon (1e-5), attention_bias=True, tie_embeddings=True and the MLP's tanh-approximate GELU (HF
"gelu_new"); `model_kwargs` maps a config.json onto those arguments. GPT2LMHeadModel puts the weights under
`transformer.`, GPT2Model has no prefix; both load. HF's GPT-2 projections are `Conv1D`s whose weights are stored
[in, out] (not transposed like nn.Linear), so kernels are reshaped, never transposed:

| HF tensor (under `transformer.` or not) | ours (layer tensors: slice i of the leading `layers` axis) |
|---|---|
| wte.weight [vocab, d], wpe.weight [n_positions, d] | embed.embedding, pos |
| h.i.ln_1, h.i.ln_2, ln_f .{weight,bias} | blocks.norm1, blocks.norm2, norm .{scale,bias} |
| h.i.attn.c_attn.weight [d, 3d] = [q, k, v] columns | blocks.attn.{wq,wk,wv} [d, heads, head_dim] each |
| h.i.attn.c_attn.bias [3d] | blocks.attn.{bq,bk,bv} [heads, head_dim] each |
| h.i.attn.c_proj.{weight [d, d], bias} | blocks.attn.wo [heads, head_dim, d], blocks.attn.bo |
| h.i.mlp.c_fc.{weight [d, 4d], bias}, h.i.mlp.c_proj.{weight [4d, d], bias} | blocks.mlp.{up,down}.{kernel,bias} |

Ignored on load: the `h.i.attn.bias` / `h.i.attn.masked_bias` buffers (causal mask constants older transformers
versions saved) and `lm_head.weight` (tied to wte; checked equal). A missing or unexpected tensor raises
`_common.CheckpointMismatch` (a ValueError and a KeyError) naming it, a mis-shaped one a ValueError naming it.
`to_hf` writes the GPT2LMHeadModel layout without lm_head.weight, as transformers' `save_pretrained` does.
"""

import json
import re
from collections.abc import Mapping
from math import prod
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from jaxdl.convert._common import check_names, check_shape, check_tied, read_model_dir, strip_prefix
from jaxdl.models.language import gpt

PREFIX = "transformer."
BUFFERS = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")  # non-trainable mask constants, not weights
TIED = {"lm_head.weight": "wte.weight"}
ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # both the tanh GELU approximation (our Mlp's nnx.gelu)

# (our variable, layer index into its leading `layers` axis or None for a non-layer variable)
Part = tuple[nnx.Variable, int | None]


def _check_model(model: gpt.Model) -> None:
    """ValueError naming the model argument when `model` is not GPT-2 shaped (no place for HF's tensors)."""
    attn = model.blocks.attn
    for ok, arg in (
        (model.positions == "learned", "positions='learned'"),
        (isinstance(model.norm, nnx.LayerNorm), "norm='layer'"),
        (attn.use_bias, "attention_bias=True"),
        (model.tie, "tie_embeddings=True"),
        (getattr(model, "head_kind", "full") == "full", "head='full'"),
        (attn.kv_heads == attn.heads, "num_kv_heads=0 (no GQA)"),
    ):
        if not ok:
            raise ValueError(f"hf_gpt2: GPT-2 needs a gpt model with {arg} (see hf_gpt2.model_kwargs)")


def _entries(model: gpt.Model) -> list[tuple[str, tuple[int, ...], list[Part]]]:
    """(HF name without the `transformer.` prefix, lead, parts): the HF tensor is the concatenation along its last
    axis of each part reshaped to lead + (-1,) (lead = () for vectors, (rows,) for matrices)."""
    _check_model(model)
    b, a, d = model.blocks, model.blocks.attn, model.dim
    out = [("wte.weight", (model.vocab,), [(model.embed.embedding, None)]),
           ("wpe.weight", (model.max_len,), [(model.pos, None)])]  # fmt: skip

    def norm(name, ln, i):
        out.extend([(f"{name}.weight", (), [(ln.scale, i)]), (f"{name}.bias", (), [(ln.bias, i)])])

    def conv1d(name, weights, biases, rows, i):
        out.extend([(f"{name}.weight", (rows,), [(w, i) for w in weights]), (f"{name}.bias", (), [(v, i) for v in biases])])  # fmt: skip

    for i in range(model.depth):
        p = f"h.{i}."
        norm(f"{p}ln_1", b.norm1, i)
        conv1d(f"{p}attn.c_attn", (a.wq, a.wk, a.wv), (a.bq, a.bk, a.bv), d, i)
        conv1d(f"{p}attn.c_proj", (a.wo,), (a.bo,), d, i)
        norm(f"{p}ln_2", b.norm2, i)
        conv1d(f"{p}mlp.c_fc", (b.mlp.up.kernel,), (b.mlp.up.bias,), d, i)
        conv1d(f"{p}mlp.c_proj", (b.mlp.down.kernel,), (b.mlp.down.bias,), b.mlp.down.kernel.shape[1], i)
    norm("ln_f", model.norm, None)
    return out


def _part_shape(part: Part) -> tuple[int, ...]:
    var, i = part
    return tuple(var.shape[1:] if i is not None else var.shape)


def _hf_shape(lead: tuple[int, ...], parts: list[Part]) -> tuple[int, ...]:
    return (*lead, sum(prod(_part_shape(p)) // prod(lead) for p in parts))


def to_hf(model: gpt.Model, *, prefix: str = PREFIX) -> dict[str, np.ndarray]:
    """The model's parameters under HF GPT-2 names (`prefix` "transformer." = GPT2LMHeadModel, "" = GPT2Model);
    the tied lm_head.weight is left out (transformers re-ties it on load)."""
    host: dict[int, np.ndarray] = {}  # one device->host copy per (layer-stacked) variable
    value = lambda var: host.setdefault(id(var), np.asarray(var[...]))
    out = {}
    for name, lead, parts in _entries(model):
        arrays = [(value(v) if i is None else value(v)[i]).reshape(*lead, -1) for v, i in parts]
        out[prefix + name] = np.ascontiguousarray(np.concatenate(arrays, axis=-1))
    return out


def from_hf(model: gpt.Model, tensors: Mapping[str, np.ndarray]) -> gpt.Model:
    """Loads HF GPT-2 `tensors` (GPT2LMHeadModel names under `transformer.`, or GPT2Model names) into `model` in
    place and returns it. Every parameter must be present; see the module docstring for what is ignored."""
    given = strip_prefix(tensors, PREFIX, "hf_gpt2")
    entries = _entries(model)
    check_names(
        "hf_gpt2",
        (name for name, _, _ in entries),
        given,
        ignore=lambda k: BUFFERS.fullmatch(k) is not None or k in TIED,
        model=f" (depth={model.depth}, dim={model.dim}, vocab={model.vocab})",
    )
    check_tied("hf_gpt2", given, TIED)
    new: dict[int, tuple[nnx.Variable, np.ndarray]] = {}  # variable -> its full (stacked) value, filled below
    for name, lead, parts in entries:
        a = np.asarray(given[name])
        check_shape("hf_gpt2", name, a, _hf_shape(lead, parts))
        widths = [prod(_part_shape(p)) // prod(lead) for p in parts]
        for (var, i), piece in zip(parts, np.split(a, np.cumsum(widths)[:-1], axis=-1), strict=True):
            _, buf = new.setdefault(id(var), (var, np.zeros(var.shape, a.dtype)))
            piece = piece.reshape(_part_shape((var, i)))
            if i is None:
                buf[...] = piece
            else:
                buf[i] = piece
    for var, buf in new.values():
        var.set_value(jnp.asarray(buf, dtype=var.dtype))
    return model


def model_kwargs(config: Mapping) -> dict:
    """`gpt.Model` keyword arguments (config.model keys) from a HF GPT-2 config.json dict; the vocabulary size
    (`num_classes`) is config["vocab_size"]. Errors name unsupported or missing config keys. HF's three dropout
    rates map to our one `dropout` = resid_pdrop (we have no dropout on attention probabilities, attn_pdrop)."""
    for key, ok in (
        ("model_type", "gpt2"),
        ("scale_attn_weights", True),
        ("scale_attn_by_inverse_layer_idx", False),
        ("add_cross_attention", False),
        ("tie_word_embeddings", True),
    ):
        if config.get(key, ok) != ok:
            raise ValueError(f"hf_gpt2: config.json {key}={config[key]!r} is not supported (only {ok!r})")
    act = config.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise ValueError(f"hf_gpt2: config.json activation_function={act!r} is not supported (only {ACTIVATIONS})")
    for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
        if key not in config:
            raise ValueError(f"hf_gpt2: config.json lacks {key!r}")
    return dict(
        depth=config["n_layer"],
        dim=config["n_embd"],
        heads=config["n_head"],
        mlp_dim=config.get("n_inner") or 4 * config["n_embd"],
        dropout=config.get("resid_pdrop", 0.1),
        norm="layer",
        norm_eps=config.get("layer_norm_epsilon", 1e-5),
        positions="learned",
        max_len=config["n_positions"],
        tie_embeddings=True,
        attention_bias=True,
    )


def hf_config(model: gpt.Model) -> dict:
    """The config.json dict of a GPT-2 shaped `model` (the inverse of `model_kwargs`, plus vocab_size)."""
    _check_model(model)
    return dict(
        architectures=["GPT2LMHeadModel"],
        model_type="gpt2",
        vocab_size=model.vocab,
        n_positions=model.max_len,
        n_embd=model.dim,
        n_layer=model.depth,
        n_head=model.blocks.attn.heads,
        n_inner=model.blocks.mlp.up.kernel.shape[-1],
        activation_function="gelu_new",
        layer_norm_epsilon=model.norm.epsilon,
        resid_pdrop=model.dropout,
        embd_pdrop=model.dropout,
        attn_pdrop=0.0,
        tie_word_embeddings=True,
    )


def load_pretrained(path: str | Path, *, length: int | None = None, seed: int = 0, **kw) -> gpt.Model:
    """A `gpt.Model` built from the HF model directory `path` (config.json + model.safetensors) with its weights.
    `length` (default n_positions) is the model's input_shape; `kw` override model arguments (e.g. dropout)."""
    config, tensors = read_model_dir(path, "hf_gpt2")
    args = model_kwargs(config) | kw
    make = lambda: gpt.Model(
        input_shape=(length or args["max_len"],), num_classes=config["vocab_size"], rngs=nnx.Rngs(seed), **args
    )
    with nnx.use_eager_sharding(False):  # axis names are metadata here; the trainer places the parameters
        model = nnx.eval_shape(make)  # no random init: the checkpoint covers every parameter
    return from_hf(model, tensors)


def save_safetensors(model: gpt.Model, path: str | Path) -> None:
    """Writes the model under GPT2LMHeadModel names to a .safetensors file (the "pt" format tag transformers'
    `from_pretrained` expects)."""
    save_file(to_hf(model), str(path), metadata={"format": "pt"})


def save_pretrained(model: gpt.Model, path: str | Path) -> None:
    """Writes a HF model directory (config.json + model.safetensors) that `load_pretrained` and transformers'
    `GPT2LMHeadModel.from_pretrained` read."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(hf_config(model), indent=2) + "\n")
    save_safetensors(model, path / "model.safetensors")
