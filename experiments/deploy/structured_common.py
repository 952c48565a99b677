"""Pieces shared by the structured-pruning studies (conv channels, attention heads) on Fashion-MNIST: the split as
arrays, a jitted forward, test accuracy, a plain optax fine-tuning loop, alternating latency and XLA's FLOP count."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdl import data, models


def split_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    src = data.load("fashion_mnist", split)
    b = next(data.eval_batches(src, dataset="fashion_mnist", batch_size=len(src)))
    return np.asarray(b["input"]), np.asarray(b["label"])


def _fresh(rest):
    """A copy of the non-parameter state with new Variables, so a model that writes a variable in its forward (the
    transformer's AuxLoss) writes at the current trace level instead of into the caller's objects."""
    return jax.tree.map(lambda a: a, rest)


def forward_fn(graphdef, rest):
    fwd = jax.jit(lambda p, x: nnx.merge(graphdef, p, _fresh(rest))(x, train=False))
    return fwd


def accuracy(fwd, params, x, y, batch: int = 1000) -> float:
    hits = sum(int(np.sum(np.asarray(fwd(params, x[i : i + batch])).argmax(-1) == y[i : i + batch]))
               for i in range(0, len(x), batch))  # fmt: skip
    return hits / len(x)


def finetune(graphdef, params, rest, xs, ys, steps: int, lr: float = 3e-4, batch: int = 128):
    """`steps` Adam steps of cross-entropy on the train split in fixed order (a plain optax loop): new params."""
    tx = optax.adam(lr)

    @jax.jit
    def step(p, o, x, y):
        def loss(p):
            logits = nnx.merge(graphdef, p, _fresh(rest))(x, train=False)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        u, o = tx.update(jax.grad(loss)(p), o, p)
        return optax.apply_updates(p, u), o

    opt = tx.init(params)
    for i in range(steps):
        j = (i * batch) % (len(xs) - batch)
        params, opt = step(params, opt, xs[j : j + batch], ys[j : j + batch])
    return params


def alternating_latency_ms(fa, pa, fb, pb, x, repeats: int) -> tuple[float, float, list, list]:
    """Medians (ms) of `repeats` calls of fa(pa, x) and fb(pb, x), alternated call by call."""
    xa = jnp.asarray(x)
    for f, p in ((fa, pa), (fb, pb)):
        for _ in range(3):
            jax.block_until_ready(f(p, xa))
    ta, tb = [], []
    for _ in range(repeats):
        for f, p, t in ((fa, pa, ta), (fb, pb, tb)):
            t0 = time.perf_counter()
            jax.block_until_ready(f(p, xa))
            t.append(1e3 * (time.perf_counter() - t0))
    return float(np.median(ta)), float(np.median(tb)), ta, tb


def flops(fwd, params, x) -> float:
    return float(fwd.lower(params, jnp.asarray(x)).compile().cost_analysis()["flops"])


def dense_row(graphdef, params, rest, data, finetune_steps: int) -> tuple[dict, object]:
    """(row: test accuracy before / after `finetune_steps` of fine-tuning, XLA FLOPs at batch 256, parameter count;
    the jitted dense forward) of the trained model. data = (x_train, y_train, x_test, y_test)."""
    xs, ys, xt, yt = data
    fwd = forward_fn(graphdef, rest)
    tuned = finetune(graphdef, params, rest, xs, ys, finetune_steps)
    row = {"accuracy": accuracy(fwd, params, xt, yt), "accuracy_finetuned": accuracy(fwd, tuned, xt, yt),
           "flops_b256": flops(fwd, params, xt[:256]),
           "params": int(sum(np.size(a) for a in jax.tree.leaves(params.to_pure_dict())))}  # fmt: skip
    return row, fwd


def pruned_row(cfg, pure, input_shape, dense_fwd, dense_params, data, finetune_steps: int, repeats: int) -> dict:
    """The smaller dense model `cfg` loaded with `pure` (params dict): accuracy before / after fine-tuning, FLOPs,
    parameter count, and its batch-256 latency timed alternately with the dense model's."""
    xs, ys, xt, yt = data
    with nnx.use_eager_sharding(False):
        small = models.make(cfg, input_shape=input_shape, num_classes=10, rngs=nnx.Rngs(0))
    sg, sp, sr = nnx.split(small, nnx.Param, ...)
    sp.replace_by_pure_dict(pure)
    fwd = forward_fn(sg, sr)
    sp_tuned = finetune(sg, sp, sr, xs, ys, finetune_steps)
    xb = xt[:256]
    dense_ms, ms, dense_t, t = alternating_latency_ms(dense_fwd, dense_params, fwd, sp, xb, repeats)
    return {"accuracy": accuracy(fwd, sp, xt, yt), "accuracy_finetuned": accuracy(fwd, sp_tuned, xt, yt),
            "flops_b256": flops(fwd, sp, xb), "params": int(sum(np.size(a) for a in jax.tree.leaves(pure))),
            "latency_ms_b256": ms, "dense_latency_ms_b256_same_time": dense_ms, "speedup": dense_ms / ms,
            "latency_samples_ms": t, "dense_latency_samples_ms": dense_t}  # fmt: skip
