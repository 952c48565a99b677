"""CPU throughput: the trainer end to end vs its compiled step vs a hand-written loop, and step times of LeNet-5,
ResNet-20 and a small GPT beside PyTorch eager / torch.compile on the same shapes and threads.

Command (project venv; the PyTorch side runs in a side virtualenv, see README.md):
  python experiments/cpu_perf/run.py --out=experiments/cpu_perf/results.json \
      [--peer_python=/tmp/peer_venv/bin/python] [--repeats=3]

Main job (MNIST-1D CNN, batch 100, the README's config): five ways to run the same training, interleaved
`repeats` times (A/B/C/D/E, A/B/C/D/E, ...) so machine load hits all alike:
  trainer   `train_and_evaluate` ms/step from its own logged windows after the first (jit, data, metrics, NaN guard)
  trainer_disk, trainer_disk_grain   the same with every batch decoded from array_record (config.data.cache=
            "stream"), inline (the pipeline before jaxdl.data.memory) or by 2 Grain threads
  step      the trainer's compiled step alone, synchronized every step (`jaxdl.steptime`)
  loop      a hand-written `jax.jit` + optax Adam loop over in-memory arrays with the same NNX model, synchronized
            only at the end (what a careful user writes by hand)
Models: the trainer's compiled step (synchronized) for each model, and the PyTorch peer (experiments/cpu_perf/
torch_peer.py) run as a subprocess in the same invocation so all ratios come from one run.
"""

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from jaxdl import config as config_lib  # noqa: E402
from jaxdl import data, models  # noqa: E402
from jaxdl.metrics import environment, read_metrics  # noqa: E402
from jaxdl.steptime import compile_step, time_steps  # noqa: E402


def define_flags() -> None:
    """The command's flags, defined only when run as a script (profile_step.py imports MODELS / model_config)."""
    flags.DEFINE_string("out", "experiments/cpu_perf/results.json", "JSON with every timing.")
    flags.DEFINE_string("peer_python", "", "Python of the side virtualenv with torch ('' skips the PyTorch column).")
    flags.DEFINE_integer("repeats", 3, "Interleaved repeats of each main-job measurement.")
    flags.DEFINE_integer("main_steps", 1500, "Steps per main-job measurement.")
    flags.DEFINE_integer("model_steps", 20, "Timed steps per model (after 3 warm-up steps).")
    flags.DEFINE_string("models", "lenet,resnet20,gpt", "Models to time beside PyTorch.")
    flags.DEFINE_integer("peer_threads", 0, "PyTorch intra-op threads (0: its default, the machine's cores).")
    flags.DEFINE_integer("model_rounds", 2, "Alternating JAX / PyTorch rounds per model (the median is kept).")


FLAGS = flags.FLAGS

MAIN_CONFIG = "experiments/mnist1d/config.py:cnn"
# (model config, input shape, classes, batch, dtype of inputs): the shapes torch_peer.py builds too.
MODELS = {
    "lenet": (dict(name="lenet"), (28, 28, 1), 10, 256),
    "resnet20": (dict(name="resnet", depth=20, norm="batch", residual=True), (32, 32, 3), 10, 128),
    "gpt": (
        dict(
            name="gpt", dim=128, depth=4, heads=4, mlp_dim=512, max_len=128, positions="learned", tie_embeddings=False
        ),
        (128,),
        256,
        32,
    ),
}


def main_config(steps: int) -> ml_collections.ConfigDict:
    path, arg = MAIN_CONFIG.split(":")
    spec = {"__name__": "cfg"}
    exec(compile(open(os.path.join(ROOT, path)).read(), path, "exec"), spec)
    c = spec["get_config"](arg)
    c.train.steps, c.train.log_every = steps, steps // 5
    c.train.eval_every = c.train.checkpoint_every = 0
    c.evals = ml_collections.ConfigDict({"main": dict(kind="classify", every=0)})
    c.train.progress = False
    return c


def time_trainer(steps: int, **data) -> tuple[float, float]:
    """(ms/step, input-wait fraction) of the trainer over its logged windows after the first (which holds the
    first step's dispatch); `data` overrides config.data (e.g. cache="stream" to decode every batch from disk)."""
    from jaxdl.train import train_and_evaluate

    c = main_config(steps)
    c.data.update(data)
    with tempfile.TemporaryDirectory() as workdir:
        train_and_evaluate(c, workdir)
        logs = [r for r in read_metrics(workdir) if "train/steps_per_sec" in r][1:]
    return 1e3 / float(np.mean([r["train/steps_per_sec"] for r in logs])), float(
        np.mean([r["train/input_wait_fraction"] for r in logs])
    )


def time_compiled_step(config, input_shape, num_classes, make_batch, steps: int) -> tuple[float, float]:
    """(median ms per synchronized step, the last step's loss: the same inputs every time, so a flag or layout
    that changes numerics shows here)."""
    step, state, sharding = compile_step(config, dict(input_shape=input_shape, num_classes=num_classes))
    times, metrics = time_steps(step, state, sharding, make_batch, steps=steps, warmup=3)
    return 1e3 * float(np.median(times)), float(metrics["loss"])


def time_hand_loop(steps: int) -> float:
    """The same model and optimizer, written as a user would without the trainer: ms/step over `steps` steps."""
    c = main_config(steps)
    src = data.memory.cache(data.load(c.data.name, "train"), mode="memory")
    x, y = (np.asarray(v) for v in (data.preprocess(c.data.name, src.arrays)[k] for k in ("input", "label")))
    with nnx.use_eager_sharding(False):  # one device: the logical axis names stay metadata
        model = models.make(c.model.to_dict(), input_shape=(40,), num_classes=10, rngs=nnx.Rngs(c.seed))
    graphdef, params = nnx.split(model)
    tx = optax.adam(c.optim.lr)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, xb, yb):
        def loss_fn(p):
            logits = nnx.merge(graphdef, p)(xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    b, per_epoch = c.data.batch_size, len(x) // c.data.batch_size
    params, opt_state, loss = step(params, opt_state, x[:b], y[:b])  # compile
    jax.block_until_ready(loss)
    t0 = time.perf_counter()
    for i in range(steps):
        j = i % per_epoch
        params, opt_state, loss = step(params, opt_state, x[j * b : (j + 1) * b], y[j * b : (j + 1) * b])
    jax.block_until_ready(loss)
    return 1e3 * (time.perf_counter() - t0) / steps


def model_config(name: str) -> tuple[ml_collections.ConfigDict, tuple, int, int]:
    model, shape, classes, batch = MODELS[name]
    c = config_lib.base()
    c.model = ml_collections.ConfigDict(model)
    c.data.name = "pydoc_bytes128" if name == "gpt" else "fashion_mnist"  # validation only: batches are random
    c.task.name = "lm" if name == "gpt" else "classify"
    c.data.batch_size = batch
    c.optim.name, c.optim.lr, c.optim.weight_decay = "adamw", 1e-3, 1e-4
    c.mesh.data = 1
    return c, shape, classes, batch


def jax_model_times(steps: int) -> dict[str, float]:
    out = {}
    for name in FLAGS.models.split(","):
        c, shape, classes, batch = model_config(name)
        if name == "gpt":
            make = lambda rng, b=batch, s=shape, v=classes: (lambda t: {"input": t[:, :-1], "label": t[:, 1:]})(
                rng.integers(0, v, (b, s[0] + 1)).astype(np.int32)
            )
        else:
            make = lambda rng, b=batch, s=shape, k=classes: {
                "input": rng.standard_normal((b, *s), np.float32),
                "label": rng.integers(0, k, b).astype(np.int32),
            }
        out[name], loss = time_compiled_step(c, shape, classes, make, steps)
        print(f"jax {name}: {out[name]:.2f} ms/step (loss {loss:.6f})", flush=True)
    return out


def peer_times(steps: int) -> dict:
    if not FLAGS.peer_python:
        return {}
    cmd = [FLAGS.peer_python, os.path.join(ROOT, "experiments/cpu_perf/torch_peer.py"), f"--steps={steps}"]
    cmd += [f"--models={FLAGS.models}", f"--threads={FLAGS.peer_threads}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": ""})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv):
    del argv
    os.chdir(ROOT)
    steps = FLAGS.main_steps
    c = main_config(steps)
    # trainer: the default (split in memory, batches made inline); trainer_disk: every batch decoded from
    # array_record inline (the pipeline before jaxdl.data.memory); trainer_disk_grain: decoded by 2 Grain threads
    trainers = {"trainer": {}, "trainer_disk": dict(cache="stream", workers=0), "trainer_disk_grain": dict(cache="stream", workers=2)}  # fmt: skip
    main_rows = {**{k: [] for k in trainers}, "step": [], "loop": []}
    waits = {k: [] for k in trainers}
    x_shape = (c.data.batch_size, 40)
    make = lambda rng: {
        "input": rng.standard_normal(x_shape, np.float32),
        "label": rng.integers(0, 10, x_shape[0]).astype(np.int32),
    }
    for _ in range(FLAGS.repeats):
        for name, data_overrides in trainers.items():
            ms, wait = time_trainer(steps, **data_overrides)
            main_rows[name].append(ms)
            waits[name].append(wait)
        main_rows["step"].append(time_compiled_step(c, (40,), 10, make, 200)[0])
        main_rows["loop"].append(time_hand_loop(steps))
        print({k: round(v[-1], 3) for k, v in main_rows.items()}, flush=True)
    jax_rounds, peer_rounds = [], []
    for _ in range(FLAGS.model_rounds):  # JAX and PyTorch alternate, so load changes hit both
        jax_rounds.append(jax_model_times(FLAGS.model_steps))
        peer_rounds.append(peer_times(FLAGS.model_steps))
    jax_models = {m: float(np.median([r[m] for r in jax_rounds])) for m in jax_rounds[0]}
    peers = {
        m: {k: float(np.median([r[m][k] for r in peer_rounds])) for k in peer_rounds[0][m] if k.endswith("_ms")}
        for m in jax_models
        if peer_rounds[0]
    }
    peers["versions"] = peer_rounds[0].get("versions", {}) if peer_rounds[0] else {}
    result = dict(
        command="python experiments/cpu_perf/run.py " + " ".join(sys.argv[1:]),
        date=time.strftime("%Y-%m-%d"),
        machine=dict(cpus=os.cpu_count(), processor=platform.processor() or platform.machine()),
        environment=environment(),
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        main_job=dict(
            config=MAIN_CONFIG, steps=steps, repeats=FLAGS.repeats, ms_per_step=main_rows, input_wait_fraction=waits
        ),
        models={
            name: dict(shape=MODELS[name][1:], jax_ms=jax_models[name], **peers.get(name, {})) for name in jax_models
        },
        peer_versions=peers.get("versions", {}),
        rounds=dict(jax=jax_rounds, torch=peer_rounds),
    )
    if FLAGS.repeats:
        med = {k: float(np.median(v)) for k, v in main_rows.items()}
        result["main_job"]["ratio_trainer_to_loop"] = med["trainer"] / med["loop"]
        print(f"main job ms/step (median of {FLAGS.repeats}): " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()))
        print(f"trainer / hand-written loop: {result['main_job']['ratio_trainer_to_loop']:.2f}")
    with open(FLAGS.out, "w") as f:
        json.dump(result, f, indent=1)
    for name, row in result["models"].items():
        print(name, {k: v for k, v in row.items() if k != "shape"})


if __name__ == "__main__":
    define_flags()
    app.run(main)
