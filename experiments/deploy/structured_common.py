"""Pieces shared by the structured-pruning studies (conv channels, attention heads) on Fashion-MNIST: the split as
arrays, a jitted forward, test accuracy, a plain optax fine-tuning loop, alternating latency and XLA's FLOP count."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdl import data


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
