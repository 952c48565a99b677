"""Runs the quantization study (experiments/quantization/config.py) and prints its markdown table.

    python experiments/quantization/run.py --workdir=/tmp/quant [--arg=mlp,smoke]

Per seed: trains the fp32 MNIST-1D MLP with the trainer (resumes if `<workdir>/fp32_seed<s>` is done), converts
its checkpoint with `jaxdl.compress.quantize.convert_checkpoint` for every PTQ row and evaluates the reloaded
int8/int4 model (`load_quantized`: QuantDense layers calling kernels.int8_matmul.api); then fine-tunes the fp32
model for `finetune_steps` in float (control, then PTQ) and with fake quantization (QAT, then conversion).
Writes `<workdir>/results.json` and `<workdir>/table.md`.
"""

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags, logging
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from experiments.quantization.config import get_config, get_study  # noqa: E402
from jaxdl import data  # noqa: E402
from jaxdl.compress import quantize as Q  # noqa: E402
from jaxdl.layers.quantized import apply_quant  # noqa: E402
from jaxdl.losses import classification_loss  # noqa: E402
from jaxdl.metrics import environment  # noqa: E402
from jaxdl.train import train_and_evaluate  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Where the fp32 runs, quantized checkpoints, results.json and table.md go.")
flags.DEFINE_string("arg", "mlp", "Config arg: mlp[,smoke].")
flags.mark_flags_as_required(["workdir"])


def evaluate(model: nnx.Module, config, baseline: np.ndarray | None = None) -> dict:
    """{"acc": test accuracy over every test example, "logits": [n, classes], "err": relative logit error
    ||logits - baseline|| / ||baseline|| (when a baseline is given)} (jitted forward of whatever form the model
    is in)."""
    source = data.load(config.data.name, config.data.eval_split, config.data.data_dir or None)
    forward = nnx.jit(lambda m, x: m(x, train=False))
    correct = count = 0.0
    logits = []
    for batch in data.eval_batches(source, dataset=config.data.name, batch_size=config.data.eval_batch_size):
        out = forward(model, batch["input"])
        correct += float(jnp.sum((jnp.argmax(out, -1) == batch["label"]) * batch["mask"]))
        count += float(jnp.sum(batch["mask"]))
        logits.append(np.asarray(out)[np.asarray(batch["mask"]) > 0])
    logits = np.concatenate(logits)
    err = None if baseline is None else float(np.linalg.norm(logits - baseline) / np.linalg.norm(baseline))
    return {"acc": correct / count, "logits": logits, "err": err}


def finetune(model: nnx.Module, config, *, steps: int, lr: float, seed: int) -> nnx.Module:
    """`steps` of Adam(lr) on the training split (a fresh data order), whatever the model's layers compute
    (float, or fake-quantized for QAT: the STE gradients flow to the fp32 master weights)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(lr)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, batch):
        def loss_fn(p):
            logits = nnx.merge(graphdef, p, rest, copy=True)(batch["input"], train=False)
            return classification_loss(logits, batch["label"])[0]

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    source = data.load(config.data.name, config.data.train_split, config.data.data_dir or None)
    loader = data.TrainLoader(
        source, dataset=config.data.name, global_batch_size=config.data.batch_size, seed=10_000 + seed
    )
    for i in range(steps):
        params, opt_state, _ = step(params, opt_state, loader.host_batch(i))
    return nnx.merge(graphdef, params, rest)


def run_seed(seed: int, workdir: str, arg: str) -> dict[str, dict]:
    config, study = get_config(arg), get_study(arg)
    config.seed = seed
    src = os.path.join(workdir, f"fp32_seed{seed}")
    train_and_evaluate(config, src)
    model, config, _, _ = Q.restore_float(src)
    _, params, _ = nnx.split(model, nnx.Param, ...)
    fp32_bytes = Q.weight_bytes(params)
    fp32 = evaluate(model, config)
    rows = {"fp32": {"acc": fp32["acc"], "bytes": fp32_bytes, "err": None}}
    row = lambda ev, nbytes: {"acc": ev["acc"], "bytes": nbytes, "err": ev["err"]}

    for name, mode, group, calibration in study.ptq:
        dst = os.path.join(workdir, f"ptq_seed{seed}", name.split(",")[0].replace(" ", "_") + f"_{group}_{calibration}")
        report = Q.convert_checkpoint(
            src,
            dst,
            mode,
            group_size=group,
            calibration=calibration,
            percentile=study.percentile,
            num_calibration_batches=study.calibration_batches,
        )
        qmodel, _ = Q.load_quantized(dst)
        rows[name] = row(evaluate(qmodel, config, fp32["logits"]), report["weight_bytes_after"])

    ft = dict(steps=study.finetune_steps, lr=study.finetune_lr, seed=seed)
    control = finetune(Q.restore_float(src)[0], config, **ft)
    ctrl = evaluate(control, config)
    rows[f"fp32 + {study.finetune_steps} float steps (control)"] = row({**ctrl, "err": None}, fp32_bytes)
    for mode, group in study.qat:
        tag = f"{mode}" + (", g = 20" if group == 20 else ", per column" if mode == "w4a16" else "")
        ptq = Q.quantize_model(nnx.clone(control), mode, group)
        qbytes = Q.weight_bytes(nnx.state(ptq))
        rows[f"control + PTQ {tag}"] = row(evaluate(ptq, config, ctrl["logits"]), qbytes)
        qat = apply_quant(Q.restore_float(src)[0], {"mode": mode, "qat": True, "group_size": group})
        qat = finetune(qat, config, **ft)
        rows[f"QAT {tag} ({study.finetune_steps} steps) -> int"] = row(
            evaluate(Q.quantize_model(qat, mode, group), config), qbytes
        )
    return rows


def table(per_seed: list[dict[str, dict]]) -> str:
    names = list(per_seed[0])
    fp32 = np.array([r["fp32"]["acc"] for r in per_seed])
    lines = [
        "| variant | test accuracy (%) | Δ vs fp32 (points) | rel. logit error | weight bytes | compression |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        acc = np.array([r[name]["acc"] for r in per_seed]) * 100
        delta = acc - fp32 * 100
        nbytes = per_seed[0][name]["bytes"]
        pm = lambda a: f"{a.mean():.1f} ± {a.std(ddof=1):.1f}" if len(a) > 1 else f"{a.mean():.1f}"
        d = (
            "—"
            if name == "fp32"
            else (f"{delta.mean():+.2f} ± {delta.std(ddof=1):.2f}" if len(delta) > 1 else f"{delta.mean():+.2f}")
        )
        ratio = per_seed[0]["fp32"]["bytes"] / nbytes
        errs = [r[name]["err"] for r in per_seed]
        e = "—" if errs[0] is None else f"{np.mean(errs):.4f}"
        lines.append(f"| {name} | {pm(acc)} | {d} | {e} | {nbytes:,} | {ratio:.2f}x |")
    return "\n".join(lines)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save/restore at INFO
    t0 = time.perf_counter()
    study = get_study(FLAGS.arg)
    per_seed = []
    for seed in study.seeds:
        per_seed.append(run_seed(seed, FLAGS.workdir, FLAGS.arg))
        print(f"seed {seed}: " + json.dumps({k: round(v["acc"], 4) for k, v in per_seed[-1].items()}), flush=True)
    md = table(per_seed)
    wall = time.perf_counter() - t0
    os.makedirs(FLAGS.workdir, exist_ok=True)
    with open(os.path.join(FLAGS.workdir, "results.json"), "w") as f:
        json.dump({"seeds": list(study.seeds), "rows": per_seed, "wall_s": wall, "env": environment()}, f, indent=2)
    with open(os.path.join(FLAGS.workdir, "table.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    print(f"wall {wall:.0f} s, seeds {list(study.seeds)}")


if __name__ == "__main__":
    app.run(main)
