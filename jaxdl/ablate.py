"""Paper-style ablations: a sweep of config overrides × seeds → one training run each → results table and plots.

Command: python -m jaxdl.ablate --config=experiments/<study>/<file>.py[:arg] --workdir=DIR [--seeds=0,1,2]
         [--emit=slurm] [--only=INDEX] [--report] [--config.a.b=v ...]

The config file defines `get_config(arg)` (the base config, built on `jaxdl.config.base()`) and `get_sweep(arg)`,
a sweep spec made of the helpers below:

    axis("optim.lr", [1e-3, 1e-2])           # one cell per value: [{"optim.lr": 0.001}, {"optim.lr": 0.01}]
    product(axis(...), axis(...), ...)       # cartesian product, first axis outermost
    zip_(axis(...), axis(...), ...)          # element-wise (equal lengths)
    [{"model.name": "mlp"}, {...}, spec]     # a plain list: cells one after another (specs flattened in)

A cell is an ordered {dotted key: value} dict; the optional key "_name" names it, otherwise the name is
`short=value` joined by commas ("model=mlp,optim=adam"; `x.name` shortens to `x`, `optim.lr` to `lr`). Setting
`model.name` to another model keeps only the base's model arguments that the new model accepts (model arguments
differ between models); the cell's other `model.*` keys apply after it. Every cell's config is validated before any
run: an unknown key fails, naming it.

Runs are cells × seeds, run `index = cell_index * len(seeds) + seed_index`, each in `WORKDIR/<cell>/seed_<s>` via
`jaxdl.train.train_and_evaluate`. A finished run writes `result.json` atomically (final metrics + seconds) and is
skipped next time; a run that raises writes `error.json` (the traceback) and the sweep goes on (it is retried on the
next invocation). Afterwards `WORKDIR/results.md`, `results.csv`, `learning_curves.png` and `final_<metric>.png`
aggregate every finished run: per cell mean ± std (sample std, ddof=1) and n (successes only; failed runs are
counted and the cell is marked).

`--emit=slurm` writes `WORKDIR/ablate.sbatch`, a job array with one task per run (each calls this module with
`--only=<index>`), and prints how to submit it followed by a `--report` job that writes the tables and plots.
"""

import copy
import csv
import importlib.util
import itertools
import json
import math
import os
import shlex
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ml_collections import ConfigDict

from jaxdl import config as config_lib
from jaxdl import models

NAME_KEY = "_name"
MAIN_METRICS = ("eval/accuracy", "eval/loss")
FINAL_TRAIN_METRICS = ("train/loss", "train/accuracy")  # last logged values, also stored in result.json
CURVES = ("train/loss", "train/error", "eval/accuracy")  # x/error = 1 - x/accuracy

Cell = dict[str, Any]


# --------------------------------------------------------------------------------------------- sweep specs
def axis(key: str, values: Sequence[Any]) -> list[Cell]:
    """One cell per value of the dotted config key `key`."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"axis key must be a dotted config path like 'optim.lr', got {key!r}")
    if isinstance(values, str) or not isinstance(values, Sequence) or not len(values):
        raise ValueError(f"axis {key!r}: values must be a non-empty list, got {values!r}")
    return [{key: v} for v in values]


def _merge(parts: Sequence[Mapping[str, Any]]) -> Cell:
    out: Cell = {}
    for part in parts:
        for k, v in part.items():
            if k == NAME_KEY and k in out:  # named parts combine their names: "resnet20,crop+flip"
                out[k] = f"{out[k]},{v}"
                continue
            if k in out:
                raise ValueError(f"sweep key {k!r} is set by two combined axes")
            out[k] = v
    return out


def product(*specs) -> list[Cell]:
    """The cartesian product of the specs' cells (first spec outermost), each combination merged into one cell."""
    return [_merge(combo) for combo in itertools.product(*(expand_cells(s) for s in specs))]


def zip_(*specs) -> list[Cell]:
    """The specs' cells merged element-wise; all specs must have the same number of cells."""
    lists = [expand_cells(s) for s in specs]
    if len({len(x) for x in lists}) > 1:
        raise ValueError(f"zip_ needs specs of equal length, got lengths {[len(x) for x in lists]}")
    return [_merge(combo) for combo in zip(*lists, strict=True)]


def expand_cells(spec) -> list[Cell]:
    """A spec (a dict = one cell, or a list of dicts/specs) as a flat list of cells, in order."""
    if isinstance(spec, Mapping):
        return [dict(spec)]
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        return [cell for s in spec for cell in expand_cells(s)]
    raise TypeError(f"a sweep spec is a dict of overrides or a list of them, got {type(spec).__name__}: {spec!r}")


def _short(key: str) -> str:
    parts = key.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, list | tuple):
        text = "x".join(_fmt(v) for v in value)
    else:
        text = str(value)
    return "".join(c if c.isalnum() or c in "._-+" else "_" for c in text)


def cell_names(cells: Sequence[Cell]) -> list[str]:
    """Readable, unique, filesystem-safe names; `_name` wins; short keys fall back to full ones on a clash."""
    keys = list(dict.fromkeys(k for c in cells for k in c if k != NAME_KEY))
    shorts = {k: _short(k) for k in keys}
    clashes = {s for s in shorts.values() if list(shorts.values()).count(s) > 1}
    shorts = {k: (k if s in clashes else s) for k, s in shorts.items()}
    names = []
    for c in cells:
        if NAME_KEY in c:
            name = _fmt(c[NAME_KEY])
        else:
            name = ",".join(f"{shorts[k]}={_fmt(v)}" for k, v in c.items()) or "base"
        names.append(name)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"sweep has duplicate cells {dupes}; give them distinct values or a '{NAME_KEY}'")
    return names


def expand(spec) -> list[tuple[str, Cell]]:
    """The sweep as [(cell name, {dotted key: value})], in order ("_name" removed from the overrides)."""
    cells = expand_cells(spec)
    if not cells:
        raise ValueError("the sweep is empty")
    return [(n, {k: v for k, v in c.items() if k != NAME_KEY}) for n, c in zip(cell_names(cells), cells, strict=True)]


# ---------------------------------------------------------------------------------------- config overrides
def apply_overrides(base: ConfigDict, overrides: Mapping[str, Any]) -> ConfigDict:
    """A validated copy of `base` with the dotted `overrides` set; an unknown key raises ValueError naming it."""
    config = copy.deepcopy(base)
    items = sorted(overrides.items(), key=lambda kv: kv[0] != "model.name")  # model.name first: fresh section
    for key, value in items:
        parts = key.split(".")
        if key == "model.name":
            if value != config.model.name:  # keep the base's model arguments that the new model accepts
                accepted = models.accepted_args(value)
                kept = {k: v for k, v in config.model.items() if k != "name" and k in accepted}
                with config.unlocked():
                    config.model = ConfigDict({"name": value, **kept}, type_safe=False)
            continue
        node = config
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, ConfigDict) or part not in node:
                raise ValueError(f"sweep override {key!r}: config key {'.'.join(parts[: i + 1])!r} is unknown")
            node = node[part]
        leaf = parts[-1]
        if not isinstance(node, ConfigDict):
            raise ValueError(f"sweep override {key!r}: {'.'.join(parts[:-1])!r} is not a config section")
        free_form = parts[0] == "model" and len(parts) == 2  # model arguments are checked against the model
        if leaf not in node and not free_form:
            raise ValueError(
                f"sweep override {key!r}: config key {key!r} is unknown; known keys there: {sorted(node.keys())}"
            )
        if isinstance(value, list):
            value = tuple(value)
        with node.unlocked():
            try:
                node[leaf] = value
            except TypeError as e:
                raise TypeError(f"sweep override {key!r}: {e}") from e
    return config_lib.validate(config)


# ------------------------------------------------------------------------------------------------- studies
def load_study(config_arg: str) -> tuple[ConfigDict, list[tuple[str, Cell]]]:
    """`path.py[:arg]` → (base config from get_config(arg), expanded cells from get_sweep(arg))."""
    path, _, arg = config_arg.partition(":")
    module = _load_module(path)
    for fn in ("get_config", "get_sweep"):
        if not hasattr(module, fn):
            raise ValueError(f"{path} must define {fn}(arg) for jaxdl.ablate")
    call = lambda f: f(arg) if arg else f()
    return call(module.get_config), expand(call(module.get_sweep))


def _load_module(path: str):
    name = "jaxdl_ablate_study_" + "".join(c if c.isalnum() else "_" for c in os.path.abspath(path))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot load config file {path!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plan(base: ConfigDict, cells: Sequence[tuple[str, Cell]], seeds: Sequence[int]) -> list[dict]:
    """Every run, in index order: {index, cell, overrides, seed, config}. Validates every config first."""
    configs = [apply_overrides(base, overrides) for _, overrides in cells]
    runs = []
    for (name, overrides), config in zip(cells, configs, strict=True):
        for seed in seeds:
            c = copy.deepcopy(config)
            with c.unlocked():
                c.seed = int(seed)
            runs.append(dict(index=len(runs), cell=name, overrides=overrides, seed=int(seed), config=c))
    return runs


def run_dir(workdir: str, cell: str, seed: int) -> str:
    return os.path.join(workdir, cell, f"seed_{seed}")


def _write_json(path: str, obj: Any) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def _read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def _final_train_metrics(rdir: str) -> dict[str, float]:
    from jaxdl.metrics import read_metrics

    last: dict[str, float] = {}
    try:
        for record in read_metrics(rdir):
            last.update({k: v for k, v in record.items() if k in FINAL_TRAIN_METRICS})
    except FileNotFoundError:
        pass
    return last


def execute(run: dict, workdir: str) -> str:
    """Runs one planned run unless its result.json exists; returns "skipped", "done" or "failed"."""
    rdir = run_dir(workdir, run["cell"], run["seed"])
    result_path, error_path = os.path.join(rdir, "result.json"), os.path.join(rdir, "error.json")
    if os.path.exists(result_path):
        return "skipped"
    os.makedirs(rdir, exist_ok=True)
    from jaxdl import train  # imported late: planning and --emit do not need the trainer

    meta = dict(cell=run["cell"], overrides=run["overrides"], seed=run["seed"], index=run["index"])
    t0 = time.time()
    try:
        final = train.train_and_evaluate(run["config"], rdir)
    except Exception as e:  # recorded; the sweep goes on
        _write_json(
            error_path,
            dict(meta, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(), seconds=time.time() - t0),
        )
        print(f"[ablate] run {run['index']} {run['cell']} seed {run['seed']}: FAILED ({type(e).__name__}: {e})")
        return "failed"
    seconds = time.time() - t0
    metrics = {**{k: float(v) for k, v in final.items()}, **_final_train_metrics(rdir)}
    _write_json(result_path, dict(meta, metrics=metrics, seconds=seconds))
    if os.path.exists(error_path):
        os.remove(error_path)  # an earlier failure, now superseded
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k in MAIN_METRICS)
    print(f"[ablate] run {run['index']} {run['cell']} seed {run['seed']}: {shown} ({seconds:.1f} s)", flush=True)
    return "done"


def run_sweep(
    base: ConfigDict,
    cells: Sequence[tuple[str, Cell]],
    seeds: Sequence[int],
    workdir: str,
    *,
    only: int | None = None,
    report: bool = True,
    command: str | None = None,
) -> dict[str, int]:
    """Validates all runs, executes them in order (or just run `only`), then writes the report; counts by status."""
    runs = plan(base, cells, seeds)
    if only is not None:
        if not 0 <= only < len(runs):
            raise ValueError(f"--only={only}: the sweep has runs 0..{len(runs) - 1}")
        runs = [runs[only]]
    os.makedirs(workdir, exist_ok=True)
    counts = {"done": 0, "skipped": 0, "failed": 0}
    for run in runs:
        counts[execute(run, workdir)] += 1
    if report:
        write_report(workdir, cells, seeds, command=command)
    return counts


# -------------------------------------------------------------------------------------------- aggregation
def collect(workdir: str, cells: Sequence[tuple[str, Cell]], seeds: Sequence[int]) -> list[dict]:
    """Per cell: {name, overrides, results: [result.json], failed: [error.json], missing: [seed]}."""
    out = []
    for name, overrides in cells:
        entry = dict(name=name, overrides=overrides, results=[], failed=[], missing=[])
        for seed in seeds:
            rdir = run_dir(workdir, name, seed)
            if os.path.exists(os.path.join(rdir, "result.json")):
                entry["results"].append(dict(_read_json(os.path.join(rdir, "result.json")), dir=rdir))
            elif os.path.exists(os.path.join(rdir, "error.json")):
                entry["failed"].append(_read_json(os.path.join(rdir, "error.json")))
            else:
                entry["missing"].append(seed)
        out.append(entry)
    return out


def _metric_names(entries: Sequence[dict]) -> list[str]:
    present = list(dict.fromkeys(k for e in entries for r in e["results"] for k in r["metrics"]))
    return [m for m in MAIN_METRICS if m in present] + sorted(m for m in present if m not in MAIN_METRICS)


def _stats(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def summarize(entries: Sequence[dict]) -> tuple[list[str], list[dict]]:
    """(metric names, one row per cell: name, n, failed, missing, seconds, {metric: (mean, std)})."""
    metrics = _metric_names(entries)
    rows = []
    for e in entries:
        row = dict(
            cell=e["name"],
            overrides=e["overrides"],
            n=len(e["results"]),
            failed=len(e["failed"]),
            missing=len(e["missing"]),
            seconds=sum(r["seconds"] for r in e["results"]),
            stats={m: _stats([r["metrics"][m] for r in e["results"] if m in r["metrics"]]) for m in metrics},
            errors=[f["error"] for f in e["failed"]],
        )
        rows.append(row)
    return metrics, rows


def _cell_text(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"  # no std from a single run


def write_report(
    workdir: str,
    cells: Sequence[tuple[str, Cell]],
    seeds: Sequence[int],
    *,
    plots: bool = True,
    command: str | None = None,
) -> str:
    """Writes results.md, results.csv and (with `plots`) the PNG plots; returns the markdown. `command` (the
    sweep's command line) is quoted under the title."""
    entries = collect(workdir, cells, seeds)
    metrics, rows = summarize(entries)
    total = sum(r["seconds"] for r in rows)
    lines = [
        f"# Ablation: {len(cells)} cells × seeds {list(seeds)}",
        "",
        *([f"Command: `{command}`", ""] if command else []),
        "Mean ± std (sample, ddof=1) over the seeds that finished; n counts successes only. "
        "**FAILED** marks cells with failed runs (their tracebacks are in `<cell>/seed_<s>/error.json`).",
        "",
        "| cell | n | " + " | ".join(metrics) + " | time / run (s) |",
        "|---|---|" + "---|" * len(metrics) + "---|",
    ]
    for r in rows:
        n = str(r["n"])
        if r["failed"]:
            n += f" (**FAILED** {r['failed']})"
        if r["missing"]:
            n += f" ({r['missing']} not run)"
        per_run = f"{r['seconds'] / r['n']:.1f}" if r["n"] else "—"
        lines.append(
            f"| {r['cell']} | {n} | " + " | ".join(_cell_text(*r["stats"][m]) for m in metrics) + f" | {per_run} |"
        )
    n_ok = sum(r["n"] for r in rows)
    n_failed = sum(r["failed"] for r in rows)
    lines += ["", f"Total runtime: {total:.1f} s ({total / 60:.1f} min) over {n_ok} finished runs; {n_failed} failed."]
    failures = [(r["cell"], err) for r in rows for err in r["errors"]]
    if failures:
        lines += ["", "Failures:", ""] + [f"- {cell}: `{err.splitlines()[0][:200]}`" for cell, err in failures]
    markdown = "\n".join(lines) + "\n"
    _write_text(os.path.join(workdir, "results.md"), markdown)

    tmp = os.path.join(workdir, f"results.csv.tmp.{os.getpid()}")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["cell", "overrides", "n", "failed", "missing"]
            + [f"{m} {s}" for m in metrics for s in ("mean", "std")]
            + ["seconds"]
        )
        for r in rows:
            writer.writerow(
                [r["cell"], json.dumps(r["overrides"]), r["n"], r["failed"], r["missing"]]
                + [x for m in metrics for x in r["stats"][m]]
                + [round(r["seconds"], 3)]
            )
    os.replace(tmp, os.path.join(workdir, "results.csv"))
    if plots:
        plot_curves(workdir, entries)
        for m in metrics[:1]:
            plot_bars(workdir, rows, m)
    return markdown


def _write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _curve(rdir: str, key: str) -> dict[int, float]:
    from jaxdl.metrics import read_metrics

    if key.endswith("/error"):
        return {s: 1.0 - a for s, a in _curve(rdir, key.removesuffix("/error") + "/accuracy").items()}
    try:
        return {r["step"]: r[key] for r in read_metrics(rdir) if key in r}
    except FileNotFoundError:
        return {}


def plot_curves(workdir: str, entries: Sequence[dict]) -> str:
    """learning_curves.png: train/loss, training error and eval/accuracy vs step, per cell mean with a ±std band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, panels = plt.subplots(1, len(CURVES), figsize=(6 * len(CURVES), 4.2))
    colors = plt.cm.tab20(np.arange(20) % 20) if len(entries) > 10 else [None] * 10  # distinct beyond 10 cells
    for ax, key in zip(panels, CURVES, strict=True):
        for i, e in enumerate(entries):
            curves = [_curve(r["dir"], key) for r in e["results"]]
            curves = [c for c in curves if c]
            if not curves:
                continue
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            values = np.array([[c[s] for s in steps] for c in curves])
            mean, std = values.mean(0), values.std(0, ddof=1) if len(curves) > 1 else np.zeros(len(steps))
            (line,) = ax.plot(steps, mean, color=colors[i % len(colors)], label=f"{e['name']} (n={len(curves)})")
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
    if panels[0].get_legend_handles_labels()[0]:
        panels[0].legend(fontsize="small")
    fig.tight_layout()
    path = os.path.join(workdir, "learning_curves.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_bars(workdir: str, rows: Sequence[dict], metric: str) -> str:
    """final_<metric>.png: per cell mean of the final `metric` with std error bars (failed cells: no bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["cell"] + (" (FAILED)" if r["failed"] else "") for r in rows]
    means = [r["stats"][metric][0] for r in rows]
    stds = [r["stats"][metric][1] for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 1.5), 4.5))
    x = np.arange(len(rows))
    ax.bar(x, np.nan_to_num(means), yerr=np.nan_to_num(stds), capsize=4, color="tab:blue", alpha=0.8)
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize="small")
    ax.set_ylabel(f"final {metric} (mean ± std)")
    ax.set_title(f"final {metric}, n = {', '.join(str(r['n']) for r in rows)}")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = os.path.join(workdir, f"final_{metric.replace('/', '_')}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------- slurm
def emit_slurm(config_arg: str, workdir: str, seeds: Sequence[int], n_runs: int, extra_args: Sequence[str] = ()) -> str:
    """Writes WORKDIR/ablate.sbatch: a job array of `n_runs` tasks, task i running `--only=i`; returns its path."""
    os.makedirs(os.path.join(workdir, "slurm"), exist_ok=True)
    common = [
        "python",
        "-m",
        "jaxdl.ablate",
        f"--config={config_arg}",
        f"--workdir={workdir}",
        f"--seeds={','.join(str(s) for s in seeds)}",
        *extra_args,
    ]
    cmd = " ".join(shlex.quote(a) for a in common)
    script = f"""#!/usr/bin/env bash
# jaxdl.ablate job array: {n_runs} runs (cells × seeds {list(seeds)}), one single-GPU task per run.
# Generated by: python -m jaxdl.ablate {" ".join(shlex.quote(a) for a in sys.argv[1:])}
# Submit from the repository root on a shared filesystem, then the report once every task has ended:
#   jid=$(sbatch --parsable {shlex.quote(os.path.join(workdir, "ablate.sbatch"))})
#   sbatch --dependency=afterany:$jid --wrap {shlex.quote("source launch/setup.sh && " + cmd + " --report")}
# Finished runs (result.json) are skipped, so resubmitting reruns only what failed or never ran.
#SBATCH --job-name=ablate
#SBATCH --array=0-{n_runs - 1}
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --output={workdir}/slurm/%x-%A_%a.out
set -euo pipefail
cd "${{SLURM_SUBMIT_DIR:-$PWD}}"
source launch/setup.sh  # creates or reuses .venv (shared filesystem), puts it on PATH
{cmd} --only="${{SLURM_ARRAY_TASK_ID:?run as a SLURM array task}}"
"""
    path = os.path.join(workdir, "ablate.sbatch")
    _write_text(path, script)
    os.chmod(path, 0o755)
    return path


# -------------------------------------------------------------------------------------------------- main
def define_flags() -> None:
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, "Study config file, `path.py[:arg]` with get_config/get_sweep.")
    flags.DEFINE_string("workdir", None, "Root of the per-run workdirs and the results.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds per cell.")
    flags.DEFINE_enum("emit", None, ["slurm"], "Write a job script for a cluster instead of running.")
    flags.DEFINE_integer("only", None, "Run only the run with this index (cell_index * len(seeds) + seed_index).")
    flags.DEFINE_bool("report", False, "Only aggregate finished runs into results.md/csv and plots.")
    flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    import logging

    from absl import app, flags
    from absl import logging as absl_logging

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    FLAGS = flags.FLAGS
    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("jaxdl").setLevel(logging.WARNING)
    config_arg = FLAGS["config"].config_filename
    base = FLAGS.config  # get_config(arg) with any --config.a.b=v applied
    _, cells = load_study(config_arg)
    seeds = [int(s) for s in FLAGS.seeds]
    runs = plan(base, cells, seeds)  # every cell validated before anything runs
    print(f"[ablate] {len(cells)} cells × {len(seeds)} seeds = {len(runs)} runs in {FLAGS.workdir}")
    if FLAGS.emit == "slurm":
        extra = [a for a in sys.argv[1:] if a.startswith("--config.")]
        path = emit_slurm(config_arg, FLAGS.workdir, seeds, len(runs), extra)
        print(f"[ablate] wrote {path}; submit it as its header says")
        return
    command = " ".join(["python -m jaxdl.ablate"] + [shlex.quote(a) for a in sys.argv[1:] if a != "--report"])
    if FLAGS.report:
        print(write_report(FLAGS.workdir, cells, seeds, command=command))
        return
    counts = run_sweep(base, cells, seeds, FLAGS.workdir, only=FLAGS.only, report=FLAGS.only is None, command=command)
    print(f"[ablate] {counts}")
    if FLAGS.only is None:
        with open(os.path.join(FLAGS.workdir, "results.md")) as f:
            print(f.read())


if __name__ == "__main__":
    from absl import app

    from jaxdl import ablate  # the study files import jaxdl.ablate: use that one copy (and define flags once)

    ablate.define_flags()
    app.run(ablate.main)
