"""The peer of the VAE row: flax's `examples/vae` (google/flax, Apache-2.0) run with its own code on our data.

Runs in the side virtualenv /tmp/peer_generative (jax, flax, optax, ml_collections, absl, pillow; never jaxdl's
.venv) — commands in experiments/generative/README.md:

    /tmp/peer_generative/bin/python experiments/generative/peer/run_flax_vae.py --example=/tmp/flax_vae/examples/vae \
        --data=/tmp/peer_generative_data.npz --epochs=10 --out=experiments/generative/peer/flax_vae_10ep.json

Nothing of flax's code is copied: `--example` is that folder of a google/flax checkout, and this script imports
its `models.py` (the MLP VAE: 784-500-latents, ReLU), `train.py` (`train_step`: Adam, BCE + KL; `eval_f`:
test BCE / KL / loss with one posterior sample) and `configs/default.py` (lr 1e-3, latents 20, batch 128), and
repeats the loop of its `train_and_evaluate` line for line (key(0) split for init, `TrainState` + `optax.adam`,
60000 // batch steps per epoch, `eval_f` after each epoch). Replaced: only the input pipeline. Its
`input_pipeline.py` and the top of `train.py` use TensorFlow (`tfds.builder('binarized_mnist')`, which downloads,
and `tf.data`); TensorFlow is not installed in the side venv, so `tensorflow` / `tensorflow_datasets` /
`input_pipeline` are empty stand-in modules (none of the functions used here touches them), and the batches come
from numpy: `--data` (written by export_data.py) holds Fashion-MNIST in [0, 1], binarized per batch here
(x ~ Bernoulli(pixel), numpy seed 0; our `vae` task's dynamic binarization) and the test set binarized exactly as
our `elbo` evaluator does. `--steps` caps the total steps (the "same budget as ours" run).
"""

import argparse
import importlib
import json
import os
import platform
import sys
import time
import types

import jax
import numpy as np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--example", required=True, help="google/flax examples/vae folder")
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: all epochs)")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    for name in ("tensorflow", "tensorflow_datasets", "input_pipeline"):  # TF-only imports, unused below
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.path.insert(0, a.example)
    flax_train = importlib.import_module("train")
    models = importlib.import_module("models")
    config = importlib.import_module("configs.default").get_config()
    import jax.numpy as jnp
    import optax
    from flax.training import train_state

    d = np.load(a.data)
    train, test = d["train"], jnp.asarray(d["test_binary"])
    rng_np = np.random.default_rng(0)

    # the loop of flax's train.train_and_evaluate, with numpy batches
    rng = jax.random.key(0)
    rng, key = jax.random.split(rng)
    init_data = jnp.ones((config.batch_size, 784), jnp.float32)
    params = models.model(config.latents).init(key, init_data, rng)["params"]
    state = train_state.TrainState.create(
        apply_fn=models.model(config.latents).apply, params=params, tx=optax.adam(config.learning_rate)
    )
    rng, z_key, eval_rng = jax.random.split(rng, 3)
    z = jax.random.normal(z_key, (64, config.latents))
    steps_per_epoch = len(train) // config.batch_size
    step_fn = jax.jit(flax_train.train_step, static_argnums=3)
    eval_fn = jax.jit(flax_train.eval_f, static_argnums=4)
    rows, step, t0 = [], 0, time.perf_counter()
    order = np.concatenate([rng_np.permutation(len(train)) for _ in range(a.epochs + 1)])
    for epoch in range(a.epochs):
        for _ in range(steps_per_epoch):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            batch = jnp.asarray((rng_np.random(train[idx].shape) < train[idx]).astype(np.float32))
            rng, key = jax.random.split(rng)
            state = step_fn(state, batch, key, config.latents)
            step += 1
            if a.steps and step >= a.steps:
                break
        metrics, _, _ = eval_fn(state.params, test, z, eval_rng, config.latents)
        row = {"epoch": epoch + 1, "step": step, **{k: float(v) for k, v in metrics.items()}}
        row["train_seconds_so_far"] = round(time.perf_counter() - t0, 1)
        print(row, flush=True)
        rows.append(row)
        if a.steps and step >= a.steps:
            break
    out = {
        "peer": "google/flax examples/vae (models.py, train.train_step, train.eval_f, configs/default.py)",
        "example_dir": os.path.abspath(a.example),
        "replaced": "input pipeline only: numpy batches of fashion_mnist_unit, dynamically binarized (numpy seed 0)",
        "config": dict(config),
        "environment": {
            "device": f"{os.cpu_count()}-core CPU ({platform.machine()}), shared with other jobs",
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "python": platform.python_version(),
            "jax": jax.__version__,
            "flax": importlib.import_module("flax").__version__,
            "optax": optax.__version__,
            "seed": 0,
        },
        "test_metric": "mean over the 10,000 binarized test images of BCE + KL (one posterior sample), nats",
        "epochs": rows,
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
