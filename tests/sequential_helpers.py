"""Shared by the sequential-recommender tests (test_bert4rec.py, test_sasrec_next_items.py): a synthetic
sequential pattern where popularity cannot win (`jaxdl.data.zipf_interactions.sequences`: the next item is a fixed
successor 80 % of the time, else a Zipf draw) and a short Adam run of a task's loss scored by HR@k against the
train-set popularity ranking."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdl import tasks
from jaxdl.data import zipf_interactions as zipf
from jaxdl.evaluators import _recsys_metrics as M


def synthetic_split(num_users=600, num_items=40, length=9, seed=0):
    """Train rows (history [U, length-1] -> label) from users 0..U-101, test rows from the last 100 users."""
    seqs = zipf.sequences(num_users, num_items, length, follow=0.8, exponent=1.0, seed=seed)
    train, test = seqs[:-100], seqs[-100:]
    return (train[:, :-1], train[:, -1]), (test[:, :-1], test[:, -1])


def train_and_hit_rate(task_config, model, steps=150, batch=64, k=5, seed=0):
    """(model HR@k over the whole catalogue on the test users, HR@k of the train-set popularity ranking)."""
    (hist, label), (test_hist, test_label) = synthetic_split(seed=seed)
    task = tasks.make(task_config)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(3e-3)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, b, key):
        def loss(p):
            return task.loss(nnx.merge(graphdef, p, rest, copy=True), b, nnx.Rngs(sampling=key, dropout=key))[0]

        grads = jax.grad(loss)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt

    order = np.random.default_rng(seed).permutation(np.tile(np.arange(len(label)), 1 + steps * batch // len(label)))
    for s in range(steps):
        rows = order[s * batch : (s + 1) * batch]
        b = {
            "input": jnp.zeros(batch, jnp.int32),
            "label": jnp.asarray(label[rows]),
            "history": jnp.asarray(hist[rows]),
        }
        params, opt = step(params, opt, b, jax.random.key(s))
    model = nnx.merge(graphdef, params, rest)
    scores = np.asarray(model.score_all(jnp.zeros(len(test_label), jnp.int32), history=jnp.asarray(test_hist)))
    hr = M.hit_rate(M.ranks(scores, test_label), k).mean()
    popularity = np.bincount(np.concatenate([hist.ravel(), label]), minlength=scores.shape[1]).astype(np.float64)
    pop_hr = M.hit_rate(M.ranks(np.tile(popularity, (len(test_label), 1)), test_label), k).mean()
    return hr, pop_hr
