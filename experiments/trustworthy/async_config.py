"""Asynchronous SGD vs synchronous data parallelism on Fashion-MNIST at equal examples (task `async_sgd`).

Commands (2 CPU cores shared with other jobs; experiments/trustworthy/README.md "Asynchronous SGD" and
async_sgd.json hold every number; `async_sgd.py` runs the arms):
    python -m jaxdl.main --config=experiments/trustworthy/async_config.py:tau=16 --workdir=DIR
        108 s; test accuracy after 16,384 examples 39.1 % (tau=0: 81.7 %, 118 s)
    python -m jaxdl.main --config=experiments/trustworthy/async_config.py:tau=16,scaling=inverse --workdir=DIR
        142 s; 74.3 %
    python -m jaxdl.main --config=experiments/trustworthy/async_config.py:sync=16 --workdir=DIR
        68 s; 74.3 %   (seed 0; wall times on a machine at load average ~17)
Args: `tau=T` (staleness of every update, default 0), `staleness=fixed|uniform|geometric` (τ_t's law: T is the
fixed value / the maximum / the mean), `scaling=none|inverse` (staleness-aware lr η/τ_t, Zhang et al. 2016),
`sync=W` (synchronous data parallelism with W workers instead: one update per W·32 examples, the workers' gradients
averaged; W = 1 is τ = 0), `seed=S`, `lr=L` (SGD lr, default 0.05), `examples=N` (default 16,384), `smoke`.
Every arm: MLP 784-128-10, plain SGD, per-worker minibatch 32, the same number of training examples, test accuracy
and loss on the 10,000 test images every 2,048 examples.
"""

import ml_collections

from jaxdl import config as config_lib

WORKER_BATCH = 32
EVAL_EXAMPLES = 2048  # evaluate every this many training examples (a multiple of 32·64)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(arg, tau=0, staleness="fixed", scaling="none", sync=0, seed=0, lr=0.05, examples=16384)
    if a.sync and a.tau:
        raise ValueError(f"async_config: sync={a.sync} (synchronous) and tau={a.tau} (asynchronous) exclude each other")
    workers = max(a.sync, 1)
    batch = WORKER_BATCH * workers
    if a.examples % EVAL_EXAMPLES or EVAL_EXAMPLES % batch:
        raise ValueError(
            f"async_config: examples={a.examples} must be a multiple of {EVAL_EXAMPLES}, which must be a multiple "
            f"of the batch {batch} (sync={a.sync})"
        )
    c = config_lib.base()
    c.seed = a.seed
    c.data.name = "fashion_mnist"
    c.data.eval_batch_size = 1000
    c.model = ml_collections.ConfigDict({"name": "mlp", "hidden": (128,)})
    c.task = ml_collections.ConfigDict(
        dict(
            name="async_sgd",
            dataset="fashion_mnist",
            batch_size=batch,
            staleness=a.staleness,
            tau=a.tau,
            lr_scaling=a.scaling,
        )
    )
    c.optim.name, c.optim.lr, c.optim.schedule, c.optim.warmup_steps, c.optim.weight_decay = (
        "sgd", a.lr, "constant", 0, 0.0,
    )  # fmt: skip
    c.train.steps = a.examples // batch
    c.train.eval_every = EVAL_EXAMPLES // batch
    c.train.log_every = c.train.eval_every
    c.train.checkpoint_every = 0
    # the NaN guard keeps the old state with jnp.where over the whole state, the ring of τ+1 parameter copies
    # included (2 × 26 MB per step at τ = 64): off here; a diverged arm shows as a non-finite loss, chance accuracy
    c.train.nan_guard = False
    c.train.progress = False
    c.evals = ml_collections.ConfigDict({"main": dict(kind="classify")})
    return config_lib.shrink_for_smoke(c) if a.smoke else c
