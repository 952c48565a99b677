"""The WaveNet study's results table from its run workdirs (experiments/speech/wavenet.py) and the generation
benchmark (wavenet_bench.json): test NLL in bits per sample of WaveNet (uncond / cond) beside the LPC and unigram
baselines scored on the same samples, training minutes, parameters, and generation speed cached vs naive.

  python experiments/speech/wavenet_table.py --runs=/tmp/runs --out=experiments/speech/wavenet_results.json

Training minutes = Σ over log records of log_every / train/steps_per_sec (the training loop's own time, the final
evaluation excluded). The test metrics are those of `python -m jaxdl.evaluate --workdir=RUN` on the final
checkpoint (RUN/evaluate_step<N>.json, the evaluator's current code: it adds the adaptive-σ LPC baseline); the
trainer's own final evaluation is kept beside them as `eval_in_run` (same WaveNet NLL expected). Writes the JSON (per run: final eval metrics, last train metrics, minutes, config, environment)
and prints the markdown table.
"""

import argparse
import json
import os


def read_run(workdir: str) -> dict:
    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(workdir, "environment.json")) as f:
        env = json.load(f)
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    train = [r for r in records if "train/steps_per_sec" in r]
    evals = [r for r in records if "eval/bits_per_sample" in r]
    if not evals:
        raise ValueError(f"{workdir}: no eval/bits_per_sample in metrics.jsonl (did the run finish?)")
    log_every = config["train"]["log_every"]
    seconds, prev = 0.0, 0
    for r in train:
        seconds += (r["step"] - prev) / r["train/steps_per_sec"]
        prev = r["step"]
    step = evals[-1]["step"]
    path = os.path.join(workdir, f"evaluate_step{step}.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: run `python -m jaxdl.evaluate --workdir={workdir}` first")
    with open(path) as f:
        final = json.load(f)
    return {
        "workdir": workdir,
        "step": step,
        "eval": {k.removeprefix("eval/"): v for k, v in final.items() if k.startswith("eval/")},
        "eval_in_run": {k.removeprefix("eval/"): v for k, v in evals[-1].items() if k.startswith("eval/")},
        "train_last": {k.removeprefix("train/"): v for k, v in train[-1].items() if k.startswith("train/")},
        "train_minutes": seconds / 60,
        "log_every": log_every,
        "config": {"model": config["model"], "task": config["task"], "optim": config["optim"], "seed": config["seed"]},
        "environment": env,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default="/tmp/runs")
    p.add_argument("--bench", default="experiments/speech/wavenet_bench.json")
    p.add_argument("--out", default="experiments/speech/wavenet_results.json")
    a = p.parse_args()
    runs = {k: read_run(os.path.join(a.runs, f"wavenet_{k}")) for k in ("uncond", "cond")}
    bench = json.load(open(a.bench)) if os.path.exists(a.bench) else None
    with open(a.out, "w") as f:
        json.dump({"runs": runs, "bench": bench}, f, indent=1)
    e = runs["uncond"]["eval"]
    print(
        f"Scored test samples: {int(e['samples'])} (held-out files); train code entropy {e['train_entropy_bits']:.3f}"
    )
    print("| model | test NLL bits/sample | accuracy | train minutes | steps |")
    print("|---|---|---|---|---|")
    print(f"| unigram μ-law (train code frequencies) | {e['unigram_bits_per_sample']:.3f} | – | – | – |")
    print(f"| LPC order 16 (least squares), fixed-σ Gaussian | {e['lpc_bits_per_sample']:.3f} | – | – | – |")
    print(
        f"| LPC order 16, adaptive σ (W={e['lpc_adaptive_window']:.0f}, floor {e['lpc_adaptive_floor']:g}) | "
        f"{e['lpc_adaptive_bits_per_sample']:.3f} | – | – | – |"
    )
    for k, r in runs.items():
        ev = r["eval"]
        print(
            f"| WaveNet {k} | {ev['bits_per_sample']:.3f} | {ev['accuracy']:.3f} | {r['train_minutes']:.1f} | "
            f"{r['step']} |"
        )
    if bench:
        print("\n| model | receptive field | cached samples/s | naive samples/s | speed-up | identical samples |")
        print("|---|---|---|---|---|---|")
        for r in bench["rows"]:
            print(
                f"| {r['model']} | {r['receptive_field']} | {r['cached_samples_per_s']:.0f} | "
                f"{r['naive_samples_per_s']:.0f} | {r['speedup']:.0f}× | {r['identical_samples']} |"
            )


if __name__ == "__main__":
    main()
