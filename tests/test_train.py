"""End-to-end properties of the trainer on MNIST-1D (real data, 8 simulated CPU devices)."""

import glob
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from baselines import MARGIN, entropy, eval_labels, majority_accuracy
from flax import nnx
from offline_data import require_fashion_mnist

from jaxdl import config as config_lib
from jaxdl import data, optim
from jaxdl.checkpoint import CheckpointError
from jaxdl.metrics import TIMING_METRICS, read_metrics
from jaxdl.state import NonFiniteError, guard_names, make_train_step
from jaxdl.train import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_config(data_dir, model="mlp", **train):
    c = config_lib.base()
    c.data.name = "mnist1d"
    c.data.data_dir = data_dir
    c.data.batch_size = 32
    c.data.eval_batch_size = 200
    c.model = ml_collections.ConfigDict({"name": model})
    c.optim.name = "adam"
    c.optim.lr = 3e-3
    c.train.steps = 60
    c.train.log_every = 10
    c.train.eval_every = 30
    c.train.checkpoint_every = 30
    c.train.progress = False
    for k, v in train.items():
        c.train[k] = v
    return c


def metrics_without_timing(workdir):
    return [{k: v for k, v in r.items() if k not in TIMING_METRICS} for r in read_metrics(workdir)]


def test_same_seed_gives_identical_metrics(data_dir, tmp_path):
    a = train_and_evaluate(make_config(data_dir), str(tmp_path / "a"))
    b = train_and_evaluate(make_config(data_dir), str(tmp_path / "b"))
    assert a == b
    assert metrics_without_timing(tmp_path / "a") == metrics_without_timing(tmp_path / "b")
    c = make_config(data_dir)
    c.seed = 1
    train_and_evaluate(c, str(tmp_path / "c"))
    assert metrics_without_timing(tmp_path / "a") != metrics_without_timing(tmp_path / "c")
    # it learns on real data: the eval loss is below the eval labels' entropy (2.30 nats, the best loss of a model
    # that ignores the input) by MARGIN
    floor = entropy(eval_labels("mnist1d", data_dir))
    assert a["eval/loss"] < floor - MARGIN, (a, floor)
    for f in ("config.json", "environment.json", "metrics.jsonl"):
        assert (tmp_path / "a" / f).exists()
    assert glob.glob(str(tmp_path / "a" / "tensorboard" / "events.out.tfevents.*"))


def test_cnn_learns_mnist1d(data_dir, tmp_path):
    c = make_config(data_dir, model="cnn1d", steps=800, eval_every=0, checkpoint_every=0)
    c.data.batch_size = 96
    c.optim.lr = 1e-2
    accuracy = train_and_evaluate(c, str(tmp_path))["eval/accuracy"]
    majority = majority_accuracy(eval_labels("mnist1d", data_dir))  # 0.106: always the most frequent class
    assert accuracy >= 0.85 > majority + 0.7, (accuracy, majority)


def _launch(workdir, data_dir, steps):
    cmd = [
        sys.executable, "-m", "jaxdl.main", "--config=experiments/mnist1d/config.py:mlp", f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}", f"--config.train.steps={steps}", "--config.train.log_every=10",
        "--config.train.eval_every=200", "--config.train.checkpoint_every=40", "--config.train.progress=False",
        "--config.data.batch_size=32",
    ]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_resume_after_kill_matches_uninterrupted_run(data_dir, tmp_path):
    steps = 1200
    full = _launch(tmp_path / "full", data_dir, steps)
    out, _ = full.communicate(timeout=600)
    assert full.returncode == 0, out

    def finished_steps():
        names = os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else []
        return sorted(int(n) for n in names if n.isdigit())

    ckpt_dir = tmp_path / "resumed" / "checkpoints"
    killed = _launch(tmp_path / "resumed", data_dir, steps)
    deadline = time.time() + 300
    while not finished_steps() and time.time() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    done = finished_steps()
    assert done and done[-1] < steps, f"the run was not killed mid-way (checkpoints {done})"

    resumed = _launch(tmp_path / "resumed", data_dir, steps)
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    assert metrics_without_timing(tmp_path / "resumed") == metrics_without_timing(tmp_path / "full")


def test_nan_guard_names_step_and_input(data_dir, tmp_path, monkeypatch):
    original = data.TrainLoader.host_batch

    def planted(self, step):
        batch = original(self, step)
        if step == 6:  # the 7th step
            batch["input"][3, 5] = np.nan
        return batch

    monkeypatch.setattr(data.TrainLoader, "host_batch", planted)
    with pytest.raises(NonFiniteError, match=r"step 7: first non-finite tensor is 'batch/input'"):
        train_and_evaluate(make_config(data_dir), str(tmp_path))


def test_nan_guard_names_the_gradient_and_skips_the_update():
    """A NaN planted in one parameter leaves the loss finite only if it does not feed the loss; here it does,
    so we plant it in the gradient path of one kernel: a NaN scale in the *loss* is caught as 'loss', a NaN in
    one parameter's gradient alone is caught by its name."""
    from jaxdl import models

    with nnx.use_eager_sharding(False):
        model = models.make(dict(name="mlp", hidden=(8,)), input_shape=(4,), num_classes=3, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    cfg = config_lib.base()
    cfg.optim.name = "sgd"
    tx, schedule = optim.make_optimizer(cfg.optim, 10)
    step_fn = jax.jit(make_train_step(graphdef, tx, schedule, cfg))
    state = dict(
        params=params,
        rest=rest,
        opt_state=tx.init(params),
        step=jnp.int32(0),
        rng=jax.random.key_data(jax.random.key(0)),
    )
    batch = {"input": jnp.ones((4, 4)), "label": jnp.array([0, 1, 2, 0])}
    names = guard_names(params)

    new, metrics = step_fn(jax.tree.map(jnp.copy, state), batch)
    assert int(metrics["first_nonfinite"]) == -1
    assert not np.allclose(new["params"]["head"]["kernel"][...], params["head"]["kernel"][...])

    # inf in the head bias: the loss becomes non-finite -> named 'loss', update skipped
    bad = jax.tree.map(jnp.copy, state)
    bad["params"]["head"]["bias"][...] = jnp.array([jnp.inf, 0.0, 0.0])
    new, metrics = step_fn(bad, batch)
    assert names[int(metrics["first_nonfinite"])] == "loss"
    np.testing.assert_array_equal(
        new["params"]["blocks"][0]["linear"]["kernel"][...], params["blocks"][0]["linear"]["kernel"][...]
    )
    assert int(new["step"]) == 1


def test_grad_accumulation_matches_full_batch(data_dir, tmp_path):
    runs = {}
    for accum in (1, 4):
        c = make_config(data_dir, steps=20, grad_accum=accum, eval_every=0, checkpoint_every=0, log_every=1)
        c.optim.name = "sgd"
        c.optim.lr = 0.1
        train_and_evaluate(c, str(tmp_path / str(accum)))
        runs[accum] = [r["train/loss"] for r in read_metrics(tmp_path / str(accum)) if "train/loss" in r]
    np.testing.assert_allclose(runs[4], runs[1], rtol=2e-5)


def test_corrupt_checkpoint_is_a_clear_error_not_a_restart(data_dir, tmp_path):
    c = make_config(data_dir, steps=30, checkpoint_every=15)
    train_and_evaluate(c, str(tmp_path))
    chunks = glob.glob(str(tmp_path / "checkpoints" / "30" / "state" / "**" / "d" / "*"), recursive=True)
    assert chunks
    for f in chunks:
        os.remove(f)
    with pytest.raises(CheckpointError, match=str(tmp_path / "checkpoints" / "30")):
        train_and_evaluate(make_config(data_dir, steps=60, checkpoint_every=15), str(tmp_path))


def test_lenet_fashion_mnist_smoke(data_dir, tmp_path):
    require_fashion_mnist()
    sys.path.insert(0, ROOT)
    from experiments.fashion_mnist.config import get_config

    c = get_config("lenet,smoke")
    c.data.data_dir = data_dir
    c.train.progress = False
    c.train.steps = 40
    c.model.dtype = "bfloat16"
    c.model.remat = "full"
    results = train_and_evaluate(c, str(tmp_path))
    # it learns: below the test labels' entropy (ln 10, a model that ignores the image) by MARGIN, and above
    # always predicting the most frequent class (0.1)
    labels = eval_labels(c.data.name, data_dir, c.data.eval_split)
    floor, majority = entropy(labels), majority_accuracy(labels)
    assert results["eval/loss"] < floor - MARGIN, (results, floor)
    assert results["eval/accuracy"] > majority + 0.3, (results, majority)
