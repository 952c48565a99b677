"""Serving artifacts: a trained run's inference function as serialized StableHLO (`jax.export`), its weights, its
preprocessing spec, a model card and content hashes, in one folder that reloads without the model code.

    python -m jaxdl.export --workdir=RUN --out=DIR [--step=N] [--use_ema] [--platforms=cpu,cuda]

The folder (format `jaxdl-artifact/1`, read by `jaxdl.serve.artifact.Artifact`, which imports only jax, numpy and
json):

  model.stablehlo   `jax.export.Exported.serialize()` of `f(weights, x) -> logits`: `weights` a {name: array}
                    dict, `x` the preprocessed input `[b, *input_shape]` with `b` a symbolic dimension
                    (`jax.export.symbolic_shape`), so one artifact serves every batch size; logits
                    `[b, num_classes]` (float32 for the float models). The function is the trainer's own forward
                    pass (`model(x, train=False)` of the restored graphdef), so quantization-aware layers of a run
                    with `config.quant` are exported as trained.
  weights.npz       the run's parameters and non-parameter state (batch statistics) at that step, one array per
                    name (`params/<path>`, `rest/<path>`); numpy's uncompressed npz, read with allow_pickle=False.
                    Kept beside the program rather than baked in so they can be hashed, diffed and swapped.
  preprocess.json   how a raw example of the run's dataset becomes `x` (raw feature name/shape/dtype, then a list of
                    numpy ops: cast, divide, subtract, take, avg_pool) — the exact ops of the dataset's `preprocess`,
                    so raw inputs give bitwise the trainer's inputs; `steps: null` when the preprocess has no
                    declarative form (callers then send preprocessed inputs).
  selfcheck.npz     a few eval-split inputs and the trainer's logits for them (checked by `Artifact.self_check`).
  reference.npz     the first `reference_examples` eval-split inputs and the softmax confidence of the trainer's
                    prediction on each: the reference sample of the server's drift monitor (`jaxdl.serve.drift`).
  model.md          the model card: data, metrics (from metrics.jsonl, with the command of the run), intended use,
                    limitations, hashes.
  manifest.json     format, versions, source run and step, input/output specs, class names, and sha256 of every
                    file, of the weights' content (order-, container- and timestamp-independent) and of the data
                    splits' array_record files.
"""

from __future__ import annotations

import datetime
import glob
import importlib.metadata
import json
import os
import shlex
from typing import Any

import numpy as np

from jaxdl.serve.artifact import sha256_file, weights_sha256  # the loader's hashes: one definition

FORMAT = "jaxdl-artifact/1"
FILES = ("model.stablehlo", "weights.npz", "preprocess.json", "selfcheck.npz", "reference.npz", "model.md")


def _normalized(mean: float, std: float) -> list[dict]:
    return [
        {"op": "cast", "dtype": "float32"},
        {"op": "divide", "value": 255.0},
        {"op": "subtract", "value": float(mean)},
        {"op": "divide", "value": float(std)},
    ]


def preprocess_steps(dataset: str) -> list[dict[str, Any]] | None:
    """The numpy ops of a registered dataset's preprocess, in order, with its constants (e.g. Fashion-MNIST: cast
    float32, divide 255, subtract MEAN, divide STD); None for a preprocess with no declarative form here."""
    from jaxdl.data import digits, fashion_mnist, mnist1d, registry

    known = {
        mnist1d.preprocess: lambda: [{"op": "cast", "dtype": "float32"}],
        mnist1d.paper_shuffled_preprocess: lambda: [
            {"op": "cast", "dtype": "float32"},
            {"op": "take", "axis": 1, "indices": [int(i) for i in mnist1d.PAPER_PERMUTATION]},
        ],
        fashion_mnist.preprocess: lambda: _normalized(fashion_mnist.MEAN, fashion_mnist.STD),
        fashion_mnist.half_preprocess: lambda: [
            *_normalized(fashion_mnist.MEAN, fashion_mnist.STD),
            {"op": "avg_pool", "window": [2, 2]},
        ],
        digits.preprocess: lambda: _normalized(digits.MEAN, digits.STD),
    }
    if dataset not in registry.DATASETS:
        raise ValueError(f"dataset {dataset!r} is not registered (jaxdl.data.registry.DATASETS)")
    fn = registry.DATASETS[dataset][2]
    return known[fn]() if fn in known else None


def preprocess_spec(dataset: str, data_dir: str | None = None) -> dict[str, Any]:
    """{"dataset", "source", "raw": {"key", "shape", "dtype"}, "steps": [op, ...] | null, "note"} of a registered
    dataset: the raw feature the builder stores and `preprocess_steps`."""
    from jaxdl import data
    from jaxdl.data import registry

    steps = preprocess_steps(dataset)
    fn = registry.DATASETS[dataset][2]
    info = data.builder(dataset, data_dir).info
    x_key = info.supervised_keys[0]
    feature = info.features[x_key]
    raw = {"key": x_key, "shape": list(feature.shape), "dtype": np.dtype(feature.np_dtype).name}
    source = f"{fn.__module__}.{fn.__name__}"
    note = (
        f"the ops of {source}, applied per batch [batch, *raw.shape]"
        if steps is not None
        else f"{source} has no declarative spec here: send preprocessed inputs"
    )
    return {"dataset": dataset, "source": source, "raw": raw, "steps": steps, "note": note}


def _data_hashes(config) -> dict[str, dict[str, str]]:
    """{split: {array_record file name: sha256}} of the run's dataset as built on this machine."""
    from jaxdl import data

    d = config.data
    if not d.name:
        return {}
    folder = data.builder(d.name, d.data_dir or None).data_dir
    out: dict[str, dict[str, str]] = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.array_record*"))):
        split = os.path.basename(path).split(".array_record")[0].rsplit("-", 1)[-1]
        out.setdefault(split, {})[os.path.basename(path)] = sha256_file(path)
    return out


# ------------------------------------------------------------------------------------------------ the model card


def _read_metrics(workdir: str) -> tuple[dict, dict]:
    """(last eval record, last train record) of `<workdir>/metrics.jsonl` ({} where there is none)."""
    path = os.path.join(workdir, "metrics.jsonl")
    last_eval, last_train = {}, {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if any(k.startswith("eval/") for k in rec):
                    last_eval = rec
                if "train/loss" in rec:
                    last_train = rec
    return last_eval, last_train


def _run_command(workdir: str) -> str:
    path = os.path.join(workdir, "environment.json")
    if not os.path.exists(path):
        return "(unknown: the run has no environment.json)"
    with open(path) as f:
        argv = json.load(f).get("argv") or []
    if argv and argv[0].endswith(os.path.join("jaxdl", "main.py")):
        return shlex.join(["python", "-m", "jaxdl.main", *argv[1:]])
    return shlex.join(argv) + "   (argv of the process that trained the run)"


def model_card(manifest: dict, workdir: str) -> str:
    """model.md: what the model is, the data, its metrics with the command that produced them, use, limits."""
    last_eval, last_train = _read_metrics(workdir)
    src, io = manifest["source"], manifest["io"]
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
    rows = [f"| {k} | {fmt(v)} |" for k, v in last_eval.items() if k.startswith("eval/")]
    train_rows = [f"| {k} | {fmt(v)} |" for k, v in last_train.items() if k in ("train/loss", "train/accuracy")]
    pre = manifest["preprocess"]
    splits = ", ".join(f"{k} {v}" for k, v in src["splits"].items()) or "n/a"
    lines = [
        f"# {src['model']} on {src['dataset'] or '(task-generated data)'} — step {src['step']}",
        "",
        f"Exported by `python -m jaxdl.export --workdir={src['workdir']} --out=DIR --step={src['step']}` on "
        f"{manifest['created']} (jax {manifest['versions']['jax']}, format `{FORMAT}`).",
        "",
        "## Model",
        f"- family `{src['model']}`, task `{src['task']}`; config: `config.json` of the run (model: "
        f"`{json.dumps(src['model_config'], sort_keys=True)}`); {manifest['num_weights']} parameters.",
        f"- input `x`: {io['input_dtype']} `[batch, {', '.join(map(str, io['input_shape']))}]` (batch symbolic); "
        f"output: {io['output_dtype']} logits `[batch, {io['num_classes']}]`.",
        "",
        "## Data",
        f"- dataset `{src['dataset']}` (splits: {splits}); evaluated on split `{src['eval_split']}`.",
        f"- preprocessing: {pre['note']}; steps `{json.dumps(pre['steps'])}` (preprocess.json).",
        "- data files: sha256 of each split's array_record files in manifest.json (`data_sha256`).",
        "",
        "## Metrics",
        f"From the run's `metrics.jsonl` (step {last_eval.get('step', 'n/a')}), produced by:",
        "",
        "```",
        _run_command(workdir),
        "```",
        "",
        "| metric | value |",
        "|---|---|",
        *(rows or ["| (no eval record in metrics.jsonl) | |"]),
        *train_rows,
        "",
        "## Intended use",
        f"Research and demonstration: classifying inputs drawn from the same distribution as `{src['dataset']}`, "
        "preprocessed exactly as preprocess.json says. Serve with `python -m jaxdl.serve --artifact=DIR`.",
        "",
        "## Limitations",
        "- Metrics hold only for the evaluation split above; inputs from another distribution (other sensors, "
        "brightness, resolution, class priors) can degrade accuracy silently: monitor drift.",
        "- Logits are not calibrated probabilities; softmax confidences may be over-confident.",
        "- No fairness or robustness evaluation is part of this card unless listed in the metrics above.",
        f"- The StableHLO program was lowered for platforms {manifest['platforms']}; it runs on jax >= "
        f"{manifest['versions']['jax']} (jax.export compatibility guarantees), not on other runtimes.",
        "",
        "## Hashes (sha256)",
        f"- weights (content): `{manifest['weights_sha256']}`",
        f"- artifact (model.stablehlo): `{manifest['artifact_sha256']}`",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- export


def _check_workdir(workdir: str) -> None:
    if not os.path.isdir(workdir):
        raise FileNotFoundError(f"--workdir={workdir!r} does not exist (expected a jaxdl run directory)")
    for need in ("config.json", "checkpoints"):
        if not os.path.exists(os.path.join(workdir, need)):
            raise FileNotFoundError(f"--workdir={workdir!r} has no {need}: is it a jaxdl run directory?")


def export_run(
    workdir: str,
    out: str,
    step: int | None = None,
    *,
    use_ema: bool = False,
    platforms: tuple[str, ...] = ("cpu",),
    selfcheck_examples: int = 8,
    reference_examples: int = 256,
) -> dict[str, Any]:
    """Writes the artifact of `workdir`'s checkpoint at `step` (default: latest) to `out`; returns the manifest."""
    _check_workdir(workdir)
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxdl import data
    from jaxdl.state import restore_run

    run = restore_run(workdir, step, devices=[jax.devices()[0]])
    if run.task.produces_batches or tuple(run.task.batch_keys) != ("input", "label"):
        raise ValueError(
            f"task {run.config.task.name!r} (batch keys {run.task.batch_keys}) is not exportable: the artifact "
            "serves models called as model(input, train=False)"
        )
    if use_ema and "ema" not in run.state:
        raise ValueError(f"--use_ema: the run in {workdir!r} keeps no EMA (config.train.ema_decay was 0)")
    tree = {"params": run.state["ema" if use_ema else "params"], "rest": run.state["rest"]}
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    names = [jax.tree_util.keystr(p, simple=True, separator="/").removesuffix("/value") for p, _ in leaves]
    weights = {n: np.asarray(jax.device_get(x)) for n, (_, x) in zip(names, leaves, strict=True)}
    bad = [n for n, a in weights.items() if a.dtype.kind not in "fiub"]
    if bad:
        raise ValueError(f"weights {bad} are not numeric arrays (dtype {weights[bad[0]].dtype}); cannot export")
    graphdef = run.graphdef

    def forward(w: dict, x: jax.Array) -> jax.Array:
        state = jax.tree_util.tree_unflatten(treedef, [w[n] for n in names])
        model = nnx.merge(graphdef, state["params"], state["rest"], copy=True)
        return model(x, train=False)

    # the preprocessed input's shape and dtype, from one real eval example through the dataset's own preprocess
    config = run.config
    source = data.load(config.data.name, config.data.eval_split, config.data.data_dir or None)
    k = min(selfcheck_examples, len(source))
    x_check = np.asarray(next(data.eval_batches(source, dataset=config.data.name, batch_size=k))["input"])
    input_shape, input_dtype = x_check.shape[1:], x_check.dtype
    (b,) = jax.export.symbolic_shape("b")
    w_spec = {n: jax.ShapeDtypeStruct(a.shape, a.dtype) for n, a in weights.items()}
    x_spec = jax.ShapeDtypeStruct((b, *input_shape), input_dtype)
    exported = jax.export.export(jax.jit(forward), platforms=platforms)(w_spec, x_spec)
    # the trainer's outputs on the self-check inputs: the same forward, jitted at this concrete shape
    y_check = np.asarray(jax.jit(forward)(weights, jnp.asarray(x_check)))

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "model.stablehlo"), "wb") as f:
        f.write(exported.serialize())
    np.savez(os.path.join(out, "weights.npz"), **weights)
    np.savez(os.path.join(out, "selfcheck.npz"), input=x_check, output=y_check)
    n_ref = min(reference_examples, len(source))
    x_ref = np.asarray(next(data.eval_batches(source, dataset=config.data.name, batch_size=n_ref))["input"])
    confidence = np.asarray(jax.nn.softmax(jax.jit(forward)(weights, jnp.asarray(x_ref)).astype(jnp.float32)).max(-1))
    np.savez(os.path.join(out, "reference.npz"), input=x_ref, confidence=confidence)
    pre = preprocess_spec(config.data.name, config.data.data_dir or None)
    with open(os.path.join(out, "preprocess.json"), "w") as f:
        json.dump(pre, f, indent=1)

    info = data.builder(config.data.name, config.data.data_dir or None).info
    label = info.features[info.supervised_keys[1]]
    class_names = list(label.names) if hasattr(label, "names") else None
    if class_names is not None and len(class_names) != run.ds_info["num_classes"]:
        class_names = None  # a pretext task (e.g. rotation) relabels the data
    manifest = {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": {"jax": jax.__version__, "jaxlib": importlib.metadata.version("jaxlib"), "numpy": np.__version__},
        "platforms": list(platforms),
        "source": {
            "workdir": os.path.abspath(workdir),
            "step": run.step,
            "weights": "ema" if use_ema else "params",
            "task": config.task.name,
            "model": config.model.name,
            "model_config": config.model.to_dict(),
            "dataset": config.data.name,
            "eval_split": config.data.eval_split,
            "splits": dict(run.ds_info.get("splits", {})),
        },
        "io": {
            "input_shape": list(input_shape),
            "input_dtype": input_dtype.name,
            "output_shape": ["batch", *map(int, y_check.shape[1:])],
            "output_dtype": y_check.dtype.name,
            "num_classes": int(run.ds_info["num_classes"]),
            "class_names": class_names,
            "weight_names": names,
        },
        "preprocess": pre,
        "num_weights": int(sum(a.size for n, a in weights.items() if n.startswith("params/"))),
        "weights_sha256": weights_sha256(weights),
        "artifact_sha256": sha256_file(os.path.join(out, "model.stablehlo")),
        "data_sha256": _data_hashes(config),
    }
    with open(os.path.join(out, "model.md"), "w") as f:
        f.write(model_card(manifest, workdir))
    manifest["files"] = {name: sha256_file(os.path.join(out, name)) for name in FILES}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def main(argv: list[str]) -> None:
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    m = export_run(f.workdir, f.out, f.step, use_ema=f.use_ema, platforms=tuple(f.platforms))
    print(
        f"wrote {f.out}: step {m['source']['step']}, weights sha256 {m['weights_sha256'][:16]}…, "
        f"model.stablehlo sha256 {m['artifact_sha256'][:16]}…"
    )


if __name__ == "__main__":
    import logging

    from absl import app, flags

    flags.DEFINE_string("workdir", None, "a jaxdl run directory (config.json + checkpoints/)", required=True)
    flags.DEFINE_string("out", None, "the artifact folder to write", required=True)
    flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")
    flags.DEFINE_bool("use_ema", False, "export the EMA of the parameters (runs with config.train.ema_decay > 0)")
    flags.DEFINE_list("platforms", ["cpu"], "platforms to lower for (cpu, cuda, rocm, tpu)")
    logging.getLogger("absl").setLevel(logging.WARNING)
    app.run(main)
