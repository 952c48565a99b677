"""Explanations study: trains the `explain` (LeNet-5) and `explain_vit` (small ViT) arms of config.py on
Fashion-MNIST and writes explain.json (per arm: command, wall time, final metrics, per-image Spearman ρ of the
randomization check, completeness gaps) and the attribution panels explain_<arm>.png.

Command: nice python experiments/trustworthy/explain.py --out=experiments/trustworthy [--arms=explain,explain_vit]
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def summary(values: list[float]) -> dict:
    """mean, sample std (ddof = 1) and n."""
    import numpy as np

    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)), "n": int(v.size)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="experiments/trustworthy")
    parser.add_argument("--arms", default="explain,explain_vit")
    parser.add_argument("--workdir", default="")
    args = parser.parse_args()

    import flax
    import jax
    import optax
    import scipy

    from experiments.trustworthy.config import get_config
    from jaxdl.train import train_and_evaluate

    root = args.workdir or tempfile.mkdtemp(prefix="explain_")
    path = os.path.join(args.out, "explain.json")
    results = json.load(open(path)) if os.path.exists(path) else {"runs": {}}
    results["meta"] = {
        "device": f"{jax.devices()[0].device_kind} x{jax.device_count()} ({platform.machine()}, {os.cpu_count()} "
        "cores shared with other jobs)",
        "date": datetime.date.today().isoformat(),
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "flax": flax.__version__,
            "optax": optax.__version__,
            "scipy": scipy.__version__,
        },
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "study_command": "nice python experiments/trustworthy/explain.py --out=experiments/trustworthy",
    }
    for arm in args.arms.split(","):
        config = get_config(arm)
        workdir = os.path.join(root, arm)
        t0 = time.perf_counter()
        final = train_and_evaluate(config, workdir, devices=jax.devices()[:1])
        wall = time.perf_counter() - t0
        stem = os.path.join(workdir, "explain", f"attributions_step{config.train.steps}")
        record = json.load(open(stem + ".json"))
        shutil.copyfile(stem + ".png", os.path.join(args.out, f"explain_{arm}.png"))
        results["runs"][arm] = {
            "command": f"python -m jaxdl.main --config=experiments/trustworthy/config.py:{arm} --workdir=DIR",
            "model": config.model.to_dict(),
            "evaluator": config.evals.explain.to_dict(),
            "steps": config.train.steps,
            "seed": config.seed,
            "wall_s": round(wall, 1),
            "final": final,
            "rho": {k: summary(v) for k, v in record["rho"].items()},
            "rho_per_image": record["rho"],
            "completeness_gap": record["completeness_gap"],
            "delta": record["delta"],
            "png": f"explain_{arm}.png",
        }
        with open(path, "w") as f:
            json.dump(results, f, indent=1)
        print(arm, json.dumps(final), f"{wall:.0f} s", flush=True)
    print(table(results))


def table(results: dict) -> str:
    """The README table: accuracy, completeness, ρ (mean ± std, n) per cascade stage."""
    out = [
        "| model | test acc % | IG gap / abs(Δf) | method | " + "ρ after re-init of … (mean ± std) |",
        "|---|---|---|---|---|",
    ]
    for arm, r in results["runs"].items():
        f = r["final"]
        for method in ("saliency", "ig"):
            cells = [
                f"{k.split('_', 1)[1]}: {v['mean']:.2f} ± {v['std']:.2f}"
                for k, v in r["rho"].items()
                if k.startswith(method)
            ]
            n = next(iter(r["rho"].values()))["n"]
            out.append(
                f"| {arm} | {100 * f['eval/accuracy']:.1f} | {f['eval/explain/ig_completeness_rel']:.4f} | {method} "
                f"(n = {n}) | " + "; ".join(cells) + " |"
            )
    return "\n".join(out)


if __name__ == "__main__":
    main()
