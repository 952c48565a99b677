"""Why a SASRec training step was slow, and what the all-position loss buys: the time of one jitted Adam step
(fwd + bwd + update, after compilation) of SASRec (dim 64, 2 blocks, 2 heads, MLP 256, 50 positions, 1,682 items)
under each loss, and the next-item targets it trains per second.

    python experiments/recsys/sequential/step_profile.py --out=experiments/recsys/sequential/step_profile.json

Variants (histories are full: 50 random items per row, so every position counts):
  - last_softmax: `ranking` loss="softmax": catalogue cross-entropy at the last position only (1 target per
    row; experiments/recsys/config.py:sasrec, RecBole's prefix-per-example CE);
  - all_softmax / all_bce: `next_items`: a target at each of the 50 positions (catalogue softmax, or BCE with
    1 uniform negative as Kang & McAuley);
  - last_softmax with dropout 0: whether the dropout RNG matters.
"""

import argparse
import datetime
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxdl import models, tasks

VARIANTS = (("last_softmax", "ranking", "softmax", 0.2), ("last_softmax_no_dropout", "ranking", "softmax", 0.0),
            ("all_softmax", "next_items", "softmax", 0.2), ("all_bce", "next_items", "bce", 0.2))  # fmt: skip


def step_time(task_name: str, loss: str, dropout: float, batch: int, repeats: int) -> float:
    cfg = dict(name="sasrec", num_users=943, dim=64, depth=2, heads=2, mlp_dim=256, dropout=dropout)
    with nnx.use_eager_sharding(False):
        model = models.make(ml_collections.ConfigDict(cfg), input_shape=(), num_classes=1682, rngs=nnx.Rngs(0))
    task = tasks.make({"name": task_name, "loss": loss})
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-3)
    opt = tx.init(params)
    rng = np.random.default_rng(0)
    b = {"input": jnp.zeros(batch, jnp.int32), "label": jnp.asarray(rng.integers(0, 1682, batch), jnp.int32),
         "history": jnp.asarray(rng.integers(0, 1682, (batch, 50)), jnp.int32)}  # fmt: skip

    @jax.jit
    def step(params, opt, key):
        def f(p):
            rngs = nnx.Rngs(dropout=key, sampling=jax.random.fold_in(key, 1))
            return task.loss(nnx.merge(graphdef, p, rest, copy=True), b, rngs)[0]

        value, grads = jax.value_and_grad(f)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, value

    params, opt, v = step(params, opt, jax.random.key(0))
    v.block_until_ready()
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        params, opt, v = step(params, opt, jax.random.key(i + 1))
        v.block_until_ready()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for name, task_name, loss, dropout in VARIANTS:
        s = step_time(task_name, loss, dropout, args.batch, args.repeats)
        targets = args.batch * (50 if task_name == "next_items" else 1)
        rows.append(dict(variant=name, task=task_name, loss=loss, dropout=dropout, batch=args.batch,
                         median_step_s=s, targets_per_step=targets, targets_per_s=targets / s))  # fmt: skip
        print(f"{name}: {s * 1000:.0f} ms/step, {targets / s:.0f} targets/s", flush=True)
    out = dict(
        command=f"python experiments/recsys/sequential/step_profile.py --out={args.out}", rows=rows,
        repeats=args.repeats, statistic="median over repeats, after one compiling call",
        device="2-core x86_64 CPU (shared with other jobs while this ran)",
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        versions=dict(python=platform.python_version(), jax=jax.__version__, optax=optax.__version__),
        cpu_count=os.cpu_count(),
    )  # fmt: skip
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
