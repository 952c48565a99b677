"""The generative study's post-training steps, on finished runs of `config.py` (see README.md for the commands).

    python experiments/generative/study.py collect --runs=DIR        # results.json + sample grids from the runs
    python experiments/generative/study.py samplers --runs=DIR --classifier=CLF --n=N
                                                                     # DDPM 1000 steps vs DDIM 10/50/100
    python experiments/generative/study.py interpolate --runs=DIR    # VAE latent interpolation PNG
    python experiments/generative/study.py evaluate --run=WORKDIR --spec='{"kind": "fid", ...}' --out=NAME
                                      # one evaluator (any spec) on a finished run's last checkpoint -> NAME.json

DIR holds the workdirs `ae`, `vae`, `dcgan`, `ddpm` (and `train_all.txt`, their wall times). Everything is
written next to this file.
"""

import argparse
import json
import os
import platform
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = ("ae", "vae", "dcgan", "ddpm")


def environment() -> dict:
    import flax
    import optax

    return {
        "device": f"{os.cpu_count()}-core CPU ({platform.machine()}), shared with other jobs",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "seed": 0,
    }


def _log_time(line: str) -> float:
    """Seconds since midnight of an absl log line (`I1207 19:21:23.715567 ...`)."""
    h, m, sec = line.split()[1].split(":")
    return 3600 * int(h) + 60 * int(m) + float(sec)


def phase_times(runs: str, name: str) -> dict:
    """Training and evaluation minutes of a run from its log (`<runs>/<name>.log`): from the "model ... parameters"
    line to the test split's first load (the end-of-training evaluation), then to metrics.jsonl's last write."""
    log = os.path.join(runs, f"{name}.log")
    if not os.path.exists(log):
        return {}
    lines = open(log).read().splitlines()
    start = next(_log_time(x) for x in lines if "train.py" in x and "parameters" in x)
    evals = next((_log_time(x) for x in lines if "split 'test'" in x), None)
    end_t = time.gmtime(os.path.getmtime(os.path.join(runs, name, "metrics.jsonl")))
    end = 3600 * end_t.tm_hour + 60 * end_t.tm_min + end_t.tm_sec
    out = {"train_min": round(((evals or end) - start) / 60, 2)}
    if evals is not None:
        out["eval_min"] = round((end - evals) / 60, 2)
    return out


def collect(runs: str) -> None:
    walls = {}
    path = os.path.join(runs, "train_all.txt")
    if os.path.exists(path):
        for line in open(path):
            name, rc, wall = line.split()
            walls[name] = {"rc": int(rc.split("=")[1]), "wall_s": int(wall.split("=")[1])}
    out = {"environment": environment(), "runs": {}}
    for m in MODELS:
        metrics = os.path.join(runs, m, "metrics.jsonl")
        if not os.path.exists(metrics):
            continue
        rows = [json.loads(line) for line in open(metrics)]
        evals = {k: v for r in rows for k, v in r.items() if k.startswith("eval/")}
        train = [r for r in rows if "train/steps_per_sec" in r][-1]
        cfg = json.load(open(os.path.join(runs, m, "config.json")))
        out["runs"][m] = {
            "steps": rows[-1]["step"],
            "model": cfg["model"],
            "task": cfg["task"],
            "final_eval": evals,
            "last_train_log": train,
            **phase_times(runs, m),
            **walls.get(m, {}),
        }
        samples = os.path.join(runs, m, "samples")
        for f in sorted(os.listdir(samples)) if os.path.isdir(samples) else []:
            if f.endswith(f"_step{rows[-1]['step']}.png"):
                shutil.copy(os.path.join(samples, f), os.path.join(HERE, f"{m}_{f.split('_step')[0]}.png"))
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out["runs"], indent=1)[:4000])


def _restore(runs: str, name: str):
    from jaxdl.state import restore_run

    return restore_run(os.path.join(runs, name), devices=jax.devices()[:1])


def samplers(runs: str, classifier: str, n: int, batch: int, weights: str) -> None:
    """FID (FMNIST classifier) and sampling time of the DDPM run's weights (`weights`: "params" or "ema") under
    each sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxdl import data
    from jaxdl.evaluators._images import save_grid
    from jaxdl.evaluators.fid import _classifier, frechet_distance, gaussian_stats, kernel_distance

    run = _restore(runs, "ddpm")
    features, _ = _classifier(classifier, None)
    src = data.load("fashion_mnist_unit", "test")
    real = features(data.preprocess("fashion_mnist_unit", data.memory.read(src, range(len(src))))["input"])
    params = run.state[weights]
    arms = [("ddim", 10), ("ddim", 50), ("ddim", 100), ("ddpm", 1000)]
    results = []
    for sampler, steps in arms:
        opts = {"sampler": sampler} | ({"steps": steps} if sampler == "ddim" else {})

        def chunk(p, r, key, opts=opts):
            return run.task.sample(nnx.merge(run.graphdef, p, r), key, batch, **opts)

        key = jax.random.key(0)
        fn = jax.jit(chunk).lower(params, run.state["rest"], key).compile()
        t0 = time.perf_counter()
        images = np.concatenate(
            [np.asarray(fn(params, run.state["rest"], jax.random.fold_in(key, i))) for i in range(-(-n // batch))]
        )[:n]
        seconds = time.perf_counter() - t0
        fake = features(images)
        row = {
            "sampler": sampler,
            "steps": steps,
            "num_samples": n,
            "fid": frechet_distance(*gaussian_stats(fake), *gaussian_stats(real)),
            "kid": kernel_distance(fake, real, 100, min(1000, n)),
            "sec_per_1000": 1000.0 * seconds / n,
        }
        print(row, flush=True)
        results.append(row)
        save_grid(images[:100], os.path.join(HERE, f"ddpm_{sampler}{steps}.png"))
        with open(os.path.join(HERE, "samplers.json"), "w") as f:  # after every arm: the slow DDPM arm runs last
            json.dump(
                {
                    "environment": environment(),
                    "run": os.path.join(runs, "ddpm"),
                    "weights": weights,
                    "results": results,
                },
                f,
                indent=1,
            )
        _plot(plt, results, n)


def _plot(plt, results: list, n: int) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for r in results:
        ax.scatter(r["sec_per_1000"], r["fid"])
        ax.annotate(f"{r['sampler'].upper()} {r['steps']}", (r["sec_per_1000"], r["fid"]))
    ax.set_xscale("log")
    ax.set_xlabel("sampling seconds per 1,000 images (shared 2-core CPU)")
    ax.set_ylabel(f"FID (FMNIST classifier), {n} samples")
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "samplers.png"), dpi=120)
    plt.close(fig)


def interpolate(runs: str, pairs: int = 8, points: int = 10) -> None:
    """Decoded means σ(decode(z)) along straight lines between the posterior means of pairs of test images."""
    from jaxdl import data
    from jaxdl.evaluators._images import save_grid

    run = _restore(runs, "vae")
    model = nnx.merge(run.graphdef, run.state["params"], run.state["rest"])
    src = data.load("fashion_mnist_unit", "test")
    x = jnp.asarray(data.preprocess("fashion_mnist_unit", data.memory.read(src, range(2 * pairs)))["input"])
    mean, _ = model.encode(x)
    a, b = mean[0::2], mean[1::2]
    w = jnp.linspace(0.0, 1.0, points)[None, :, None]
    z = (1 - w) * a[:, None] + w * b[:, None]  # [pairs, points, latent]
    images = np.asarray(jax.nn.sigmoid(model.decode(z))).reshape(pairs * points, *x.shape[1:])
    save_grid(images, os.path.join(HERE, "vae_interpolation.png"), cols=points)


def evaluate(run_dir: str, spec: dict, out: str) -> None:
    """Runs the evaluator `spec` (as in config.evals; `use_ema` picks the EMA weights) on the last checkpoint of
    `run_dir` and writes {environment, run, step, spec, metrics, seconds} to `<out>.json` next to this file."""
    from jaxdl import evaluators
    from jaxdl.state import restore_run
    from jaxdl.train import eval_context

    run = restore_run(run_dir, devices=jax.devices()[:1])
    ctx = eval_context(
        run.config, run.task, run.graphdef, run.ds_info, run.mesh, run.rules, run.state_sharding, run_dir
    )
    ev = evaluators.make_all({out: spec}, ctx)[out]
    t0 = time.perf_counter()
    metrics = ev.evaluate(run.state)
    result = {
        "environment": environment() | {"seed": run.config.seed},
        "run": run_dir,
        "step": run.step,
        "spec": spec,
        "metrics": metrics,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    with open(os.path.join(HERE, f"{out}.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=("collect", "samplers", "interpolate", "evaluate"))
    p.add_argument("--runs", default="")
    p.add_argument("--run", default="", help="evaluate: the run's workdir")
    p.add_argument("--spec", default="", help="evaluate: the evaluator spec as JSON")
    p.add_argument("--out", default="", help="evaluate: the JSON's name (no extension)")
    p.add_argument("--classifier", default="")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--weights", choices=("params", "ema"), default="ema")
    a = p.parse_args()
    if a.what == "collect":
        collect(a.runs)
    elif a.what == "evaluate":
        if not (a.run and a.spec and a.out):
            p.error("evaluate needs --run, --spec and --out")
        evaluate(a.run, json.loads(a.spec), a.out)
    elif a.what == "samplers":
        samplers(a.runs, a.classifier, a.n, a.batch, a.weights)
    else:
        interpolate(a.runs)


if __name__ == "__main__":
    main()
