"""Deployment study on MNIST-1D (2 CPU cores): export round trip, serving latency/throughput vs batching,
distillation (CNN teacher -> small MLP student, seeds 0-3), unstructured (magnitude) and structured (MLP units)
pruning (structured: before and after `finetune_steps` of Adam, the dense model fine-tuned the same way).

    python experiments/deploy/run.py --workdir=/tmp/deploy --out=experiments/deploy/results.json

Runtime on the reference machine (2 shared cores): ~4-6 min. Everything is one seed unless stated (seeds for the
distillation table: 0-3); the numbers are written to --out with the environment.
"""

import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from flax import nnx

from jaxdl import data
from jaxdl.compress.prune import prune_params, sparsity_report
from jaxdl.compress.structured import prune_mlp
from jaxdl.export import export_run
from jaxdl.metrics import environment
from jaxdl.serve.artifact import Artifact
from jaxdl.state import restore_run
from jaxdl.train import train_and_evaluate

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "mnist1d"))
from config import get_config  # noqa: E402  (experiments/mnist1d/config.py: the main job's setup)

flags.DEFINE_string("workdir", "/tmp/deploy", "where the runs and the artifact go")
flags.DEFINE_string("out", "experiments/deploy/results.json", "results JSON")
flags.DEFINE_integer("steps", 2000, "training steps of every run")
flags.DEFINE_integer("requests", 1000, "load-test requests per batching setting")
flags.DEFINE_integer("finetune_steps", 500, "Adam steps (lr 1e-3) fine-tuning each structured-pruned MLP")
FLAGS = flags.FLAGS


def train(name: str, model: dict, *, seed: int = 0, task: dict | None = None) -> tuple[str, dict]:
    c = get_config("cnn")
    c.seed = seed
    c.model = ml_collections.ConfigDict(model)
    c.task = ml_collections.ConfigDict(task or {"name": "classify"})
    c.train.steps, c.train.eval_every, c.train.checkpoint_every = FLAGS.steps, 0, 0
    c.train.progress = False
    workdir = os.path.join(FLAGS.workdir, name)
    t0 = time.time()
    final = train_and_evaluate(c, workdir, devices=jax.devices()[:1])
    print(f"{name}: {final} ({time.time() - t0:.0f} s)", flush=True)
    return workdir, final


def test_split() -> tuple[np.ndarray, np.ndarray]:
    b = next(data.eval_batches(data.load("mnist1d", "test"), dataset="mnist1d", batch_size=1000))
    return np.asarray(b["input"]), np.asarray(b["label"])


def accuracy(forward, x, y) -> float:
    return float(np.mean(np.asarray(forward(x)).argmax(-1) == y))


def latency_ms(forward, x, repeats: int = 50) -> float:
    jax.block_until_ready(forward(x))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(forward(x))
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def model_forward(graphdef, params, rest):
    fwd = jax.jit(lambda p, r, x: nnx.merge(graphdef, p, r)(x, train=False))
    return lambda x: fwd(params, rest, jnp.asarray(x))


def load_test(workdir: str, name: str, art_dir: str | None = None) -> list[dict]:
    """`python -m jaxdl.serve.loadtest` on the run's artifact (exported here unless given): 1:0, 8:2, 32:5."""
    if art_dir is None:
        art_dir = os.path.join(FLAGS.workdir, f"artifact_{name}")
        export_run(workdir, art_dir)
    load_json = os.path.join(FLAGS.workdir, f"loadtest_{name}.json")
    subprocess.run(
        [sys.executable, "-m", "jaxdl.serve.loadtest", f"--artifact={art_dir}", f"--out={load_json}",
         "--settings=1:0,8:2,32:5", f"--requests={FLAGS.requests}", "--concurrency=32"],
        check=True,
    )  # fmt: skip
    with open(load_json) as f:
        return json.load(f)["results"]


def train_split() -> tuple[np.ndarray, np.ndarray]:
    src = data.load("mnist1d", "train")
    b = next(data.eval_batches(src, dataset="mnist1d", batch_size=len(src)))
    return np.asarray(b["input"]), np.asarray(b["label"])


def finetune(graphdef, params, rest, steps: int, lr: float = 1e-3, batch: int = 100):
    """`steps` Adam steps of cross-entropy on the train split in fixed order (a plain optax loop): new params."""
    import optax

    xs, ys = train_split()
    tx = optax.adam(lr)

    @jax.jit
    def step(p, o, x, y):
        def loss(p):
            logits = nnx.merge(graphdef, p, rest)(x, train=False)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        g = jax.grad(loss)(p)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o

    opt = tx.init(params)
    for i in range(steps):
        j = (i * batch) % (len(xs) - batch)
        params, opt = step(params, opt, xs[j : j + batch], ys[j : j + batch])
    return params


def main(argv):
    del argv
    out, x, y = {"steps": FLAGS.steps}, *test_split()

    # 1. teacher CNN (the main job's model and setup), export, reload, serve
    teacher_dir, teacher = train("teacher_cnn", {"name": "cnn1d", "init": "torch"})
    art_dir = os.path.join(FLAGS.workdir, "artifact")
    manifest = export_run(teacher_dir, art_dir)
    art = Artifact(art_dir)
    art.self_check()
    raw = np.stack([data.load("mnist1d", "test")[i]["x"] for i in range(1000)])
    out["export"] = {
        "run_eval_accuracy": teacher["eval/accuracy"],
        "artifact_accuracy_raw_inputs": accuracy(lambda v: art(art.preprocess(v)), raw, y),
        "selfcheck_bitwise": True,
        "weights_sha256": manifest["weights_sha256"],
        "artifact_bytes": {f: os.path.getsize(os.path.join(art_dir, f)) for f in manifest["files"]},
    }
    out["serving"] = load_test(teacher_dir, "teacher_cnn", art_dir)

    # 2. unstructured one-shot magnitude pruning of the teacher (global), no fine-tuning
    run = restore_run(teacher_dir, devices=[jax.devices()[0]])
    params, rest = run.state["params"], run.state["rest"]
    out["magnitude_pruning_cnn"] = []
    for s in (0.0, 0.3, 0.5, 0.7, 0.9):
        pruned, _ = prune_params(params, s, scope="global")
        rep = sparsity_report(pruned)
        acc = accuracy(model_forward(run.graphdef, pruned, rest), x, y)
        out["magnitude_pruning_cnn"].append({"sparsity": s, "accuracy": acc, "per_layer": rep})

    # 3. distillation: MLP(32) student from scratch vs distilled from the CNN (T=4, alpha=0.9), seeds 0 and 1
    student = {"name": "mlp", "hidden": (32,), "init": "torch"}
    rows = []
    for seed in (0, 1, 2, 3):
        _, scratch = train(f"student_scratch_s{seed}", student, seed=seed)
        task = {"name": "distill", "teacher": teacher_dir, "temperature": 4.0, "alpha": 0.9}
        _, distilled = train(f"student_distilled_s{seed}", student, seed=seed, task=task)
        rows.append({"seed": seed, "scratch": scratch["eval/accuracy"], "distilled": distilled["eval/accuracy"]})
    out["distillation"] = {"teacher_accuracy": teacher["eval/accuracy"], "student": student, "runs": rows}

    # 4. structured pruning of a wide MLP's units: smaller dense models, accuracy (no fine-tuning) and latency
    wide = {"name": "mlp", "hidden": (1024, 1024), "init": "torch"}
    wide_dir, _ = train("wide_mlp", wide)
    out["serving_wide_mlp"] = load_test(wide_dir, "wide_mlp")
    run = restore_run(wide_dir, devices=[jax.devices()[0]])
    p = jax.tree.map(np.asarray, run.state["params"].to_pure_dict())
    base_fwd = model_forward(run.graphdef, run.state["params"], run.state["rest"])
    tuned = finetune(run.graphdef, run.state["params"], run.state["rest"], FLAGS.finetune_steps)
    base = {"accuracy": accuracy(base_fwd, x, y), "latency_ms_b1000": latency_ms(base_fwd, x),
            "accuracy_finetuned": accuracy(model_forward(run.graphdef, tuned, run.state["rest"]), x, y)}  # fmt: skip
    out["structured_pruning_mlp"] = [{"keep": 1.0, "hidden": list(wide["hidden"]), **base}]
    for keep in (0.5, 0.25, 0.125):
        cfg, newp, _ = prune_mlp(wide, p, keep)
        from jaxdl import models

        with nnx.use_eager_sharding(False):
            small = models.make(cfg, input_shape=(40,), num_classes=10, rngs=nnx.Rngs(0))
        g, sp, sr = nnx.split(small, nnx.Param, ...)
        sp.replace_by_pure_dict(newp)
        fwd = model_forward(g, sp, sr)
        tuned_fwd = model_forward(g, finetune(g, sp, sr, FLAGS.finetune_steps), sr)
        base_lat = latency_ms(base_fwd, x)  # re-measured beside each pruned model (shared, noisy cores)
        lat = latency_ms(fwd, x)
        out["structured_pruning_mlp"].append(
            {"keep": keep, "hidden": list(cfg["hidden"]), "accuracy": accuracy(fwd, x, y), "latency_ms_b1000": lat,
             "accuracy_finetuned": accuracy(tuned_fwd, x, y),
             "dense_latency_ms_b1000_same_time": base_lat, "speedup": base_lat / lat}
        )  # fmt: skip
    out["environment"] = environment()
    out["date"] = time.strftime("%Y-%m-%d")
    with open(FLAGS.out, "w") as f:
        json.dump(out, f, indent=1, default=float)
    print(json.dumps({k: v for k, v in out.items() if k not in ("environment", "magnitude_pruning_cnn")}, indent=1))


if __name__ == "__main__":
    app.run(main)
