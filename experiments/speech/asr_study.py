"""Scores a finished ASR run (experiments/speech/asr.py) on the held-out prompts with every decoder and writes the
study's JSON: CER/WER of greedy, prefix beam search (beam 8) and beam 8 + character 5-gram LM (Kneser-Ney, fitted
on the training transcripts; weight 0.5, length bonus 1.0, fixed before looking at test results: there is no dev
split), per-utterance transcripts, model size, training time, environment.

    python -m jaxdl.main --config=experiments/speech/asr.py --workdir=/tmp/runs/asr
    python experiments/speech/asr_study.py --workdir=/tmp/runs/asr --out=experiments/speech/asr_results.json
"""

import json
import os
import platform
import time

from absl import app, flags

DECODERS = {
    "greedy": dict(kind="asr", decoder="greedy"),
    "beam8": dict(kind="asr", decoder="beam", beam_size=8),
    "beam8_lm5": dict(kind="asr", decoder="beam_lm", beam_size=8, lm_order=5, lm_weight=0.5, length_bonus=1.0),
}
FLAGS = flags.FLAGS


def environment() -> dict:
    import flax
    import jax
    import jiwer
    import optax

    return {
        "device": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared with other jobs)",
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "jiwer": getattr(jiwer, "__version__", "4.x"),
    }


def training_record(workdir: str) -> dict:
    """Steps, wall minutes (first to last logged step, incl. evals) and the eval curve from metrics.jsonl."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
    mtime = os.path.getmtime(os.path.join(workdir, "metrics.jsonl"))
    ctime = os.path.getmtime(os.path.join(workdir, "config.json"))
    return {
        "steps": max(r["step"] for r in rows),
        "wall_minutes_config_to_last_metric": round((mtime - ctime) / 60, 1),
        "seed": config.get("seed"),
        "train_loss_last": [r["train/loss"] for r in rows if "train/loss" in r][-1],
        "eval_curve": [{k: r[k] for k in ("step", "eval/cer", "eval/wer")} for r in rows if "eval/cer" in r],
    }


def main(argv):
    del argv
    import jax
    from flax import nnx

    from jaxdl import evaluators
    from jaxdl.state import restore_run
    from jaxdl.train import eval_context

    run = restore_run(FLAGS.workdir, None, jax.devices()[:1])
    ctx = eval_context(
        run.config, run.task, run.graphdef, run.ds_info, run.mesh, run.rules, run.state_sharding, FLAGS.workdir
    )
    params = nnx.state(nnx.merge(run.graphdef, run.state["params"], run.state["rest"]), nnx.Param)
    results = {
        "run": FLAGS.workdir,
        "checkpoint_step": run.step,
        "parameters": int(sum(x.size for x in jax.tree.leaves(params))),
        "training": training_record(FLAGS.workdir),
        "environment": environment(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "decoders": {},
    }
    for name, ev in evaluators.make_all(DECODERS, ctx).items():
        t0 = time.time()
        metrics = ev.evaluate(run.state)
        results["decoders"][name] = {
            "spec": DECODERS[name],
            **metrics,
            "decode_seconds": round(time.time() - t0, 1),
            "utterances": [{"reference": r, "hypothesis": h} for r, h in ev.last],
        }
        print(name, {k: v for k, v in metrics.items()}, flush=True)
    with open(FLAGS.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "a finished run of experiments/speech/asr.py", required=True)
    flags.DEFINE_string("out", "experiments/speech/asr_results.json", "where the JSON goes")
    app.run(main)
