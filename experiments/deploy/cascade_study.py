"""Cascade study on MNIST-1D: a cheap model (the paper's MLP 100-100, or logistic regression) answers when its
max-softmax confidence is > τ, else the CNN of the deploy study; accuracy vs average FLOPs per example over a sweep of
τ (`jaxdl.serve.cascade`), plus the measured wall time of the serving cascade (`Cascade`, which runs the CNN only on
the deferred rows) at a few τ, and an A/B replay of the test traffic (`jaxdl.serve.ab`): the CNN (A, production)
against the cascade (B, the cheaper candidate) with the paired bootstrap interval and the mixture SPRT, α = 0.05.

    nice python experiments/deploy/cascade_study.py --workdir=/tmp/deploy_cascade \
        --out=experiments/deploy/cascade_results.json

Both models: the MNIST-1D main job's setup (experiments/mnist1d/config.py, Adam 1e-2, batch 100, sequential order,
PyTorch init) for --steps steps, seed 0. FLOPs: XLA's cost analysis of the jitted forward at batch 1000, / 1000.
"""

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx

from jaxdl import data
from jaxdl.metrics import environment
from jaxdl.serve import ab, cascade
from jaxdl.state import restore_run
from jaxdl.train import train_and_evaluate

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "mnist1d"))
from config import get_config  # noqa: E402  (experiments/mnist1d/config.py: the main job's setup)

flags.DEFINE_string("workdir", "/tmp/deploy_cascade", "where the two runs go")
flags.DEFINE_string("out", "experiments/deploy/cascade_results.json", "results JSON")
flags.DEFINE_integer("steps", 2000, "training steps of each model")
flags.DEFINE_list("cheap", ["mlp", "logistic"], "cheap models (keys of experiments/mnist1d/config.py's MODELS)")
FLAGS = flags.FLAGS

TAUS = [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0]
TIMED_TAUS = [0.0, 0.7, 0.9, 0.99, 1.0]
AB_TAUS = [0.5, 0.7, 0.9]  # A/B: the CNN (A, production) vs the cascade at these τ (B, candidate) on the test traffic


def train(arg: str) -> tuple[nnx.GraphDef, object, object, float]:
    c = get_config(arg)
    c.train.steps, c.train.eval_every, c.train.checkpoint_every = FLAGS.steps, 0, 0
    c.train.progress = False
    workdir = os.path.join(FLAGS.workdir, arg)
    t0 = time.time()
    final = train_and_evaluate(c, workdir, devices=jax.devices()[:1])
    print(f"{arg}: {final} ({time.time() - t0:.0f} s)", flush=True)
    run = restore_run(workdir, devices=[jax.devices()[0]])
    return run.graphdef, run.state["params"], run.state["rest"], final["eval/accuracy"]


def forward_fn(graphdef, params, rest):
    """(jax-traceable x -> logits, jitted numpy-in numpy-out forward)."""
    f = lambda x: nnx.merge(graphdef, params, rest)(x, train=False)
    jf = jax.jit(f)
    return f, lambda x: np.asarray(jf(jnp.asarray(x)))


def wall_ms(fn, x, repeats: int = 30) -> float:
    fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def main(argv):
    del argv
    b = next(data.eval_batches(data.load("mnist1d", "test"), dataset="mnist1d", batch_size=1000))
    x, y = np.asarray(b["input"]), np.asarray(b["label"])
    out = {"steps": FLAGS.steps, "taus": TAUS, "test_examples": len(y)}
    g, p, r, acc = train("cnn")
    exp_f, exp_fwd = forward_fn(g, p, r)
    e_logits = exp_fwd(x)
    out["expensive"] = {"model": "cnn1d", "run_accuracy": acc, "flops": cascade.flops_per_example(exp_f, x)}
    out["cascades"] = []
    for cheap_arg in FLAGS.cheap:
        g, p, r, acc = train(cheap_arg)
        cheap_f, cheap_fwd = forward_fn(g, p, r)
        c_logits = cheap_fwd(x)
        fc = cascade.flops_per_example(cheap_f, x)
        rows = cascade.sweep(c_logits, e_logits, y, TAUS, cost_cheap=fc, cost_expensive=out["expensive"]["flops"])
        # the serving form on the test set: its logits equal `route`'s and its wall time, the CNN alone re-timed beside
        timed = []
        for tau in TIMED_TAUS:
            cas = cascade.Cascade(cheap_fwd, exp_fwd, tau)
            want, _ = cascade.route(c_logits, e_logits, tau)
            got = cas(x)
            timed.append({"tau": tau, "deferred": float(cas.last_deferred.mean()),
                          "max_abs_diff_vs_route": float(np.max(np.abs(got - want))),
                          "ms_per_1000": wall_ms(cas, x), "cnn_alone_ms_per_1000": wall_ms(exp_fwd, x)})  # fmt: skip
        # A/B on the replayed test traffic (in the split's order): production CNN vs the cascade as the candidate
        abt = []
        for tau in AB_TAUS:
            ca, cb = ab.replay(exp_fwd, cascade.Cascade(cheap_fwd, exp_fwd, tau, pad_pow2=True), x, y, batch_size=100)
            abt.append({"tau": tau, **ab.compare(ca, cb, alpha=0.05)})
        out["cascades"].append(
            {"cheap": get_config(cheap_arg).model.to_dict(), "cheap_run_accuracy": acc, "cheap_flops": fc,
             "sweep": rows, "timed": timed, "ab_vs_cnn": abt}
        )  # fmt: skip
        print(cheap_arg, json.dumps(rows), json.dumps(timed), flush=True)
    out["environment"] = environment()
    out["date"] = time.strftime("%Y-%m-%d")
    with open(FLAGS.out, "w") as f:
        json.dump(out, f, indent=1, default=float)


if __name__ == "__main__":
    app.run(main)
