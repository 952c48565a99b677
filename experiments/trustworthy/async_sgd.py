"""Asynchronous SGD vs τ and synchronous data parallelism at equal examples: runs the arms of `async_config.py`
and writes async_sgd.json (per run: config arg, seed, wall time, the test curve vs examples, final metrics; device,
date, versions) and async_sgd.csv (one row per run and evaluation point).

Command: nice python experiments/trustworthy/async_sgd.py --out=experiments/trustworthy --seeds=0,1
         python experiments/trustworthy/async_sgd.py --out=experiments/trustworthy --table   # README table
Each arm is `python -m jaxdl.main --config=experiments/trustworthy/async_config.py:<arg>,seed=S --workdir=DIR`,
run in-process (the same trainer call); runs already in the JSON are kept (the script resumes an interrupted study).
"""

import argparse
import csv
import datetime
import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

ARMS = (
    "tau=0",
    "tau=4",
    "tau=16",
    "tau=64",
    "tau=4,scaling=inverse",
    "tau=16,scaling=inverse",
    "tau=64,scaling=inverse",
    "sync=4",
    "sync=16",
    "sync=64",
)


def curve(workdir: str, batch: int) -> list[dict]:
    """[{examples, step, test_accuracy, test_loss}] from the run's metrics.jsonl."""
    rows = []
    for line in open(os.path.join(workdir, "metrics.jsonl")):
        m = json.loads(line)
        if "eval/accuracy" in m:
            rows.append(
                dict(
                    examples=m["step"] * batch,
                    step=m["step"],
                    test_accuracy=m["eval/accuracy"],
                    test_loss=m["eval/loss"],
                )
            )
    return rows


def table(results: dict, at=(4096, 8192, 16384)) -> str:
    """Markdown: test accuracy at `at` examples and the final test loss per arm, mean ± sample std over seeds."""
    import numpy as np

    out = [
        f"| arm | updates | test accuracy % at {' / '.join(f'{e:,}' for e in at)} examples | test loss (end) | n |",
        "|---|---|---|---|---|",
    ]
    pm = lambda v, f: f"{v.mean():{f}} ± {v.std(ddof=1):{f}}" if len(v) > 1 else f"{v.mean():{f}}"
    for arm in ARMS:
        runs = [r for r in results["runs"].values() if r["arm"] == arm]
        if not runs:
            continue
        acc = lambda e, runs=runs: np.array(
            [100 * next(p for p in r["curve"] if p["examples"] == e)["test_accuracy"] for r in runs]
        )
        loss = np.array([r["final"]["eval/loss"] for r in runs])
        cells = " / ".join(pm(acc(e), ".1f") for e in at)
        out.append(f"| {arm} | {runs[0]['steps']} | {cells} | {pm(loss, '.3g')} | {len(runs)} |")
    return "\n".join(out)


def write_csv(results: dict, path: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arm", "seed", "examples", "step", "test_accuracy", "test_loss"])
        for r in results["runs"].values():
            for p in r["curve"]:
                w.writerow([r["arm"], r["seed"], p["examples"], p["step"], p["test_accuracy"], p["test_loss"]])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="experiments/trustworthy")
    parser.add_argument("--arms", default=",".join(f"[{a}]" for a in ARMS), help="[arg],[arg],... of async_config")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    path = os.path.join(args.out, "async_sgd.json")
    results = json.load(open(path)) if os.path.exists(path) else {"runs": {}}
    if args.table:
        print(table(results))
        return

    import flax
    import jax
    import optax

    from experiments.trustworthy.async_config import get_config
    from jaxdl.train import train_and_evaluate

    arms = [a.strip("[]") for a in args.arms.split("],[")]
    for a in arms:
        if a not in ARMS:
            raise ValueError(f"--arms: {a!r} is not one of {ARMS}")
    results.update(
        device=f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores shared with other jobs, "
        f"1 JAX device ({jax.devices()[0].device_kind})",
        versions=dict(
            python=platform.python_version(), jax=jax.__version__, flax=flax.__version__, optax=optax.__version__
        ),
    )
    root = tempfile.mkdtemp(prefix="async_sgd_")
    for seed in [int(s) for s in args.seeds.split(",")]:
        for arm in arms:
            key = f"{arm},seed={seed}"
            if key in results["runs"]:
                continue
            config = get_config(key)
            workdir = os.path.join(root, key.replace(",", "_").replace("=", ""))
            t0 = time.time()
            final = train_and_evaluate(config, workdir, devices=jax.devices()[:1])
            wall = time.time() - t0
            batch = config.task.batch_size
            results["runs"][key] = dict(
                arm=arm,
                seed=seed,
                command=f"python -m jaxdl.main --config=experiments/trustworthy/async_config.py:{key} --workdir=DIR",
                steps=config.train.steps,
                examples=config.train.steps * batch,
                batch=batch,
                wall_s=round(wall, 1),
                date=datetime.date.today().isoformat(),
                final={k: float(v) for k, v in final.items()},
                curve=curve(workdir, batch),
            )
            print(key, results["runs"][key]["final"], f"{wall:.0f} s", flush=True)
            json.dump(results, open(path, "w"), indent=1)
            write_csv(results, os.path.join(args.out, "async_sgd.csv"))
    print(table(results))


if __name__ == "__main__":
    main()
