"""Runs a saved run's evaluators on one of its checkpoints and prints a table.

    python -m jaxdl.evaluate --workdir=DIR [--evals=main,beam4] [--step=N]

The evaluators are the run's `config.evals` (or its task's defaults), built exactly as the trainer builds them;
`--evals` picks some by name. The checkpoint (default: the latest) is restored onto a data-parallel mesh of this
machine's devices. Results go to stdout and to `DIR/evaluate_step<N>.json` (metrics keyed as in metrics.jsonl).
"""

import json
import logging
import os

from absl import app, flags

FLAGS = flags.FLAGS


def evaluate(workdir: str, names: list[str] | None = None, step: int | None = None, devices=None) -> dict:
    """{"step": N, "<metric key>": value, ...} of the chosen evaluators on the checkpoint at `step`."""
    from jaxdl import evaluators
    from jaxdl.state import restore_run
    from jaxdl.train import eval_context

    run = restore_run(workdir, step, devices)
    specs = evaluators.specs(run.config, run.task)
    unknown = [n for n in names or () if n not in specs]
    if unknown:
        raise ValueError(f"--evals: {unknown} not among this run's evaluators {sorted(specs)}")
    chosen = {n: s for n, s in specs.items() if not names or n in names}
    ctx = eval_context(
        run.config, run.task, run.graphdef, run.ds_info, run.mesh, run.rules, run.state_sharding, workdir
    )
    results, wrong = {"step": run.step}, {}
    for name, ev in evaluators.make_all(chosen, ctx).items():
        results |= {evaluators.metric_key(name, k): v for k, v in ev.evaluate(run.state).items()}
        if getattr(ev, "errors", None):  # e.g. the translate evaluator's first wrong outputs
            wrong[name] = ev.errors
    with open(os.path.join(workdir, f"evaluate_step{run.step}.json"), "w") as f:
        json.dump(results | ({"errors": wrong} if wrong else {}), f, indent=1)
    return results


def define_flags() -> None:
    """The command-line flags, defined only when this module runs as the program (so importing it beside
    another jaxdl command cannot define a flag such as --workdir twice)."""
    flags.DEFINE_string("workdir", None, "a jaxdl run directory (config.json + checkpoints/)", required=True)
    flags.DEFINE_list("evals", [], "evaluator names of the run's config.evals (default: all)")
    flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.getLogger("absl").setLevel(logging.WARNING)
    results = evaluate(FLAGS.workdir, FLAGS.evals, FLAGS.step)
    print(f"| metric (step {results['step']}) | value |")
    print("|---|---|")
    for key, value in results.items():
        if key != "step":
            print(f"| {key} | {value:.0f} |" if float(value).is_integer() else f"| {key} | {value:.4f} |")


if __name__ == "__main__":
    define_flags()
    app.run(main)
