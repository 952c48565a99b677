"""GPT training throughput and MFU on one accelerator, per attention kernel.

Command (GPU): python experiments/gpt_mfu/run.py [--impls=auto,xla,cudnn] [--dim=1024 --depth=24 --heads=16
               --seq=2048 --batch=8 --remat=dots_no_batch --steps=30]
CPU check (tiny, seconds): python experiments/gpt_mfu/run.py --dim=64 --depth=2 --heads=4 --seq=128 --batch=2
               --vocab=256 --steps=2 --impls=xla

Trains `jaxdl.models.language.gpt` (pre-norm, RoPE, tied embeddings, bf16 compute / fp32 params, AdamW) through the
trainer's own jitted step (jaxdl.steptime) on fresh random token batches, and prints a markdown table: params,
tokens/s, step time (median after warm-up) and MFU = model FLOPs/s ÷ peak. Model FLOPs per token:
6·N (N = all parameters; with tied embeddings the embedding matrix is the output projection's matmul) plus
causal attention 6·L·S·d (QK^T and AV, fwd+bwd, halved for the causal mask), the convention of PaLM
(appendix B) and MaxText. Peak: the bf16 dense tensor-core figure of the device (H100/H200 SXM: 989 TFLOP/s);
on other devices MFU is left blank. Default shape: ~340 M parameters (d 1024, 24 layers, vocab 32,768).
"""

import os
import sys

import jax
import ml_collections
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from jaxdl import config as config_lib  # noqa: E402
from jaxdl.steptime import compile_step, time_steps  # noqa: E402

flags.DEFINE_integer("dim", 1024, "Model width.")
flags.DEFINE_integer("depth", 24, "Layers.")
flags.DEFINE_integer("heads", 16, "Attention heads (head dim = dim / heads).")
flags.DEFINE_integer("seq", 2048, "Sequence length.")
flags.DEFINE_integer("batch", 8, "Sequences per step.")
flags.DEFINE_integer("vocab", 32768, "Vocabulary size.")
flags.DEFINE_string("remat", "dots_no_batch", "config.model.remat policy (jaxdl.layers.remat).")
flags.DEFINE_integer("steps", 30, "Timed steps (after 3 warm-up steps).")
flags.DEFINE_list("impls", ["auto", "xla", "cudnn"], "config.model.attention_impl values, one row each.")
FLAGS = flags.FLAGS

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense tensor-core FLOP/s


def peak_flops(device) -> float | None:
    kind = device.device_kind
    return next((v for k, v in PEAK_BF16.items() if k in kind), None)


def model_flops_per_token(n_params: int, depth: int, seq: int, dim: int) -> float:
    return 6.0 * n_params + 6.0 * depth * seq * dim


def make_config(impl: str) -> ml_collections.ConfigDict:
    c = config_lib.base()
    c.data.name = "pydoc_bytes128"  # only validated (the benchmark feeds synthetic tokens of --seq)
    c.data.batch_size = FLAGS.batch
    c.model = ml_collections.ConfigDict(
        dict(
            name="gpt",
            dim=FLAGS.dim,
            depth=FLAGS.depth,
            heads=FLAGS.heads,
            dtype="bfloat16",
            param_dtype="float32",
            remat=FLAGS.remat,
            attention_impl=impl,
        )
    )
    c.optim.name = "adamw"
    c.optim.lr = 3e-4
    c.optim.weight_decay = 0.1
    c.optim.clip_norm = 1.0
    c.train.nan_guard = False
    return c


def bench(impl: str) -> dict:
    config = make_config(impl)
    step, state, batch_sharding = compile_step(config, dict(input_shape=(FLAGS.seq,), num_classes=FLAGS.vocab))
    n_params = sum(x.size for x in jax.tree.leaves(state["params"]))

    def make_batch(rng):
        tokens = rng.integers(0, FLAGS.vocab, (FLAGS.batch, FLAGS.seq + 1)).astype(np.int32)
        return {"input": tokens[:, :-1], "label": tokens[:, 1:]}

    times, metrics = time_steps(step, state, batch_sharding, make_batch, steps=FLAGS.steps, warmup=3)
    sec = float(np.median(times))
    tokens_per_s = FLAGS.batch * FLAGS.seq / sec
    flops = model_flops_per_token(n_params, FLAGS.depth, FLAGS.seq, FLAGS.dim) * tokens_per_s
    peak = peak_flops(jax.devices()[0])
    return dict(
        impl=impl,
        params=n_params,
        step_ms=1e3 * sec,
        tokens_per_s=tokens_per_s,
        tflops=flops / 1e12,
        mfu=flops / peak if peak else None,
        loss=float(metrics["loss"]),
    )


def main(_):
    d = jax.devices()[0]
    print(
        f"jax {jax.__version__}, {d.device_kind} ({d.platform}); GPT d={FLAGS.dim} L={FLAGS.depth} H={FLAGS.heads} "
        f"seq {FLAGS.seq} batch {FLAGS.batch} vocab {FLAGS.vocab}, bf16 compute, remat {FLAGS.remat}, "
        f"median of {FLAGS.steps} steps\n"
    )
    print("| attention_impl | params | step (ms) | tokens/s | model TFLOP/s | MFU | last loss |")
    print("|---|---|---|---|---|---|---|")
    for impl in FLAGS.impls:
        try:
            r = bench(impl)
        except Exception as e:  # one kernel failing (e.g. cudnn off-GPU) must not hide the other rows
            print(f"| {impl} | — | — | — | — | — | failed: {type(e).__name__}: {str(e).splitlines()[0][:120]} |")
            continue
        mfu = f"{100 * r['mfu']:.1f} %" if r["mfu"] is not None else "n/a"
        print(
            f"| {impl} | {r['params'] / 1e6:.1f} M | {r['step_ms']:.1f} | {r['tokens_per_s']:,.0f} | "
            f"{r['tflops']:.1f} | {mfu} | {r['loss']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    app.run(main)
