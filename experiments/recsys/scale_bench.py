"""Embedding tables at scale on simulated devices: per-device memory of a row-sharded table, and the throughput of
MF (BPR) training steps on Zipf-popularity batches (`jaxdl.data.zipf_interactions`), 1 vs 8 devices.

    python experiments/recsys/scale_bench.py --out=experiments/recsys/scale_bench.json
    python experiments/recsys/scale_bench.py --out=/tmp/sb.json --quick      # small sizes, seconds

It sets XLA_FLAGS=--xla_force_host_platform_device_count=8 itself (before jax loads). The 8 "devices" are
threads of one CPU process sharing the machine's 2 cores: the throughput numbers check that the sharded layout
runs and gives the same losses as one device, they are not a speedup measurement.

1. Memory: a `rows` x `dim` float32 table made by the recommenders' own `jaxdl.models.recsys._tables.table`
   (logical axes ("vocab", "embed")), laid out by the trainer's rules with `config.sharding.rules =
   (("vocab", "data"),)` over a `data` axis of 1, 2, 4, 8 devices and materialized (zeros: the bytes are the
   same as a random init, which would cost minutes of RNG here) directly into that sharding. Per-device bytes are
   read from `addressable_shards`; the script fails unless they equal total / axis size.
2. Throughput: `mf` with biases=False (BPR-MF), `users` x `items` tables, BPR loss with 1 uniform negative,
   batches of (user uniform, item Zipf exponent 1) pairs. Two steps:
   - "trainer_adam": the trainer's own jitted step (`jaxdl.state.compile_train_step`, task `ranking` loss
     "bpr", Adam): optax updates every row of every table each step (dense), as any optax optimizer does;
   - "sparse_sgd": the same loss's gradient taken w.r.t. the looked-up rows only and scatter-added into the
     donated tables (`table.at[ids].add`), so a step touches batch rows, not the table. Written here because
     optax has no sparse (row-wise) update; it is SGD (a sparse Adam would need per-row step counts).
   Reported: steps/s, lookups/s (3 rows per example: user, positive, negative), row updates/s, and whether the
   per-step losses of 8 devices equal 1 device (rtol 1e-5).
"""

import os

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import flax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from jaxdl import config as config_lib  # noqa: E402
from jaxdl import models, state, tasks  # noqa: E402
from jaxdl.data import zipf_interactions as zipf  # noqa: E402
from jaxdl.models.recsys._tables import table  # noqa: E402
from jaxdl.parallel import rules as rules_lib  # noqa: E402
from jaxdl.parallel.mesh import make_mesh  # noqa: E402

RULES = rules_lib.resolve("dp", (("vocab", "data"),))


def table_memory(rows: int, dim: int, n: int) -> dict:
    """Per-device bytes of a rows x dim float32 table split row-wise over a `data` axis of n devices."""
    mesh = make_mesh({"data": n}, jax.devices()[:n])
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(
            lambda: table(rows, dim, std=0.01, row_multiple=8, param_dtype="float32", rngs=nnx.Rngs(0))
        )
    sharding = rules_lib.tree_shardings(abstract, mesh, RULES).get_value()
    shape = abstract.get_value().shape
    t0 = time.perf_counter()
    value = jax.jit(lambda: jnp.zeros(shape, jnp.float32), out_shardings=sharding)()
    value.block_until_ready()
    per_device = sorted({s.data.nbytes for s in value.addressable_shards})
    out = dict(devices=n, shape=list(shape), spec=str(sharding.spec), total_bytes=int(value.nbytes),
               per_device_bytes=per_device, seconds_to_materialize=round(time.perf_counter() - t0, 2))  # fmt: skip
    del value
    if per_device != [out["total_bytes"] // n]:
        raise AssertionError(f"{n} devices: per-device bytes {per_device} != total / {n} = {out['total_bytes'] // n}")
    return out


def _config(users: int, dim: int, lr: float, optimizer: str) -> ml_collections.ConfigDict:
    c = config_lib.base()
    c.optim.name, c.optim.lr = optimizer, lr
    c.task = ml_collections.ConfigDict(dict(name="ranking", loss="bpr", num_negatives=1))
    c.model = ml_collections.ConfigDict(dict(name="mf", num_users=users, dim=dim, biases=False, row_multiple=8))
    return c


def _model(c, items: int):
    with nnx.use_eager_sharding(False):
        return models.make(c.model, input_shape=(), num_classes=items, rngs=nnx.Rngs(params=0))


def _batches(users: int, items: int, batch: int, steps: int, seed: int = 0) -> list[dict]:
    sampler = zipf.ZipfSampler(items, 1.0, seed)
    out = []
    for s in range(steps):
        u, i = zipf.interactions(users, items, batch, seed=seed * 100_003 + s, sampler=sampler)
        out.append({"input": u, "label": i})
    return out


def trainer_adam(users, items, dim, batches, n, lr=1e-3) -> dict:
    """The trainer's step (dense Adam) on n devices: per-step losses and seconds per step after the first."""
    c = _config(users, dim, lr, "adam")
    task = tasks.make(c.task)
    mesh = make_mesh({"data": n}, jax.devices()[:n])
    graphdef, params, rest = nnx.split(_model(c, items), nnx.Param, ...)
    tx, schedule = state.make_optimizers(c, task)
    s = dict(params=params, rest=rest, opt_state=tx.init(params), step=np.zeros((), np.int32),
             rng=jax.random.key_data(jax.random.key(0)))  # fmt: skip
    sharding = rules_lib.tree_shardings(s, mesh, RULES)
    s = jax.device_put(s, sharding)
    del params
    step = state.compile_train_step(c, graphdef, tx, schedule, mesh, RULES, sharding, task)
    return _timed(lambda st, b: step(st, b), s, batches, rules_lib.batch_sharding(mesh, RULES), "loss")


def sparse_sgd(users, items, dim, batches, n, lr=0.05) -> dict:
    """BPR with 1 uniform negative; gradients w.r.t. the gathered rows, scatter-added into the donated tables."""
    c = _config(users, dim, lr, "sgd")
    mesh = make_mesh({"data": n}, jax.devices()[:n])
    model = _model(c, items)
    tables = {"user": model.user_emb, "item": model.item_emb}
    sharding = {k: rules_lib.tree_shardings(v, mesh, RULES).get_value() for k, v in tables.items()}
    tables = {k: jax.device_put(v.get_value(), sharding[k]) for k, v in tables.items()}
    del model

    def step(st, batch):
        tabs, key = st
        key, sub = jax.random.split(key)
        user, pos = batch["input"], batch["label"]
        neg = jax.random.randint(sub, pos.shape, 0, items)
        rows = {"u": tabs["user"][user], "p": tabs["item"][pos], "n": tabs["item"][neg]}

        def loss_fn(r):
            diff = jnp.sum(r["u"] * r["p"], -1) - jnp.sum(r["u"] * r["n"], -1)
            return -jnp.mean(jax.nn.log_sigmoid(diff))

        loss, g = jax.value_and_grad(loss_fn)(rows)
        new = {
            "user": tabs["user"].at[user].add(-lr * g["u"]),
            "item": tabs["item"].at[pos].add(-lr * g["p"]).at[neg].add(-lr * g["n"]),
        }
        return (new, key), {"loss": loss}

    jitted = jax.jit(step, in_shardings=((sharding, None), rules_lib.batch_sharding(mesh, RULES)),
                     out_shardings=((sharding, None), None), donate_argnums=(0,))  # fmt: skip
    return _timed(jitted, (tables, jax.random.key(1)), batches, rules_lib.batch_sharding(mesh, RULES), "loss")


def _timed(step, st, batches, batch_sharding, loss_key) -> dict:
    losses, times = [], []
    for b in batches:
        b = jax.device_put(b, batch_sharding)
        t0 = time.perf_counter()
        st, metrics = step(st, b)
        losses.append(float(metrics[loss_key]))  # blocks: the step is done
        times.append(time.perf_counter() - t0)
    timed = times[2:]  # the first two calls compile (the second again, for the state the first call returns)
    first_two = [round(t, 3) for t in times[:2]]
    steps = [round(t, 4) for t in timed]
    return dict(losses=losses, first_two_steps_s=first_two, step_s=steps, mean_step_s=float(np.mean(timed)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="small sizes (a check of the script, seconds)")
    ap.add_argument("--rows", type=int, default=10_000_000, help="memory table rows")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=8, help="steps per measurement (the first 2 are not timed)")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.users, args.items, args.batch, args.steps = 80_000, 20_000, 10_000, 1024, 5
    if len(jax.devices()) < 8:
        raise RuntimeError(f"needs 8 devices, found {jax.devices()}: set XLA_FLAGS before jax loads")
    started = time.time()
    memory = [table_memory(args.rows, args.dim, n) for n in (1, 2, 4, 8)]
    for m in memory:
        print(f"memory {m['devices']} device(s): {m['per_device_bytes'][0] / 2**20:.1f} MiB per device", flush=True)
    batches = _batches(args.users, args.items, args.batch, args.steps)
    throughput = {}
    for name, fn in (("sparse_sgd", sparse_sgd), ("trainer_adam", trainer_adam)):
        runs = {n: fn(args.users, args.items, args.dim, batches, n) for n in (1, 8)}
        same = bool(np.allclose(runs[8]["losses"], runs[1]["losses"], rtol=1e-5, atol=0))
        for n, r in runs.items():
            r["steps_per_s"] = 1.0 / r["mean_step_s"]
            r["lookups_per_s"] = 3 * args.batch / r["mean_step_s"]  # user, positive, negative rows
            r["row_updates_per_s"] = 3 * args.batch / r["mean_step_s"]
            print(f"{name} {n} device(s): {r['mean_step_s'] * 1000:.1f} ms/step, {r['lookups_per_s']:.0f} "
                  f"lookups/s", flush=True)  # fmt: skip
        throughput[name] = dict(devices={str(n): r for n, r in runs.items()}, losses_8_equal_1=same)
        if not same:
            raise AssertionError(f"{name}: 8-device losses {runs[8]['losses']} != 1-device {runs[1]['losses']}")
    result = dict(
        command="python experiments/recsys/scale_bench.py " + ("--quick " if args.quick else "") + f"--out={args.out}",
        args=vars(args), memory=memory, throughput=throughput,
        zipf=dict(exponent=1.0, users="uniform", items="Zipf over a seeded permutation of ids"),
        note="8 simulated CPU devices share the machine's 2 cores: layout correctness, not speedup; the machine "
        "was shared with other jobs while this ran",
        environment=dict(date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                         python=platform.python_version(), jax=jax.__version__, flax=flax.__version__,
                         optax=optax.__version__, numpy=np.__version__, cpu_count=os.cpu_count(),
                         machine=platform.machine(), devices=len(jax.devices())),
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        seconds=round(time.time() - started, 1),
    )  # fmt: skip
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out} ({result['seconds']} s, peak RSS {result['peak_rss_mib']:.0f} MiB)")


if __name__ == "__main__":
    main()
