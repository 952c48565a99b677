"""SASRec's all-position training (jaxdl/tasks/next_items.py on jaxdl/models/recsys/sasrec.py): the causal
encoder never lets position t see a later item (no leakage into the next-item targets), the loss is the numpy mean
of the per-position losses over exactly the positions whose input and target are real items (softmax and BCE), and
a tiny run beats popularity on a synthetic sequential pattern."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from sequential_helpers import train_and_hit_rate

from jaxdl import models, tasks


def _sasrec(num_items=13, **kw):
    cfg = dict(name="sasrec", num_users=1, dim=16, depth=2, heads=2, mlp_dim=32, max_len=7, dropout=0.0) | kw
    with nnx.use_eager_sharding(False):
        return models.make(ml_collections.ConfigDict(cfg), input_shape=(), num_classes=num_items, rngs=nnx.Rngs(0))


def _batch(rng, batch=6, length=7, num_items=13):
    lengths = rng.integers(0, length + 1, batch)
    hist = np.where(
        np.arange(length)[None] >= length - lengths[:, None], rng.integers(0, num_items, (batch, length)), -1
    )
    label = rng.integers(0, num_items, batch)
    return {"input": np.zeros(batch, np.int32), "label": label.astype(np.int32), "history": hist.astype(np.int32)}


def test_position_t_never_sees_a_later_item():
    model, rng = _sasrec(), np.random.default_rng(0)
    seq = jnp.asarray(rng.integers(0, 13, (4, 7)), jnp.int32)
    h = np.asarray(model.sequence(seq))
    for t in range(6):
        changed = seq.at[:, t + 1 :].set((seq[:, t + 1 :] + 5) % 13)
        h2 = np.asarray(model.sequence(changed))
        np.testing.assert_allclose(h2[:, : t + 1], h[:, : t + 1], rtol=1e-5, atol=1e-6)
        assert not np.allclose(h2[:, t + 1], h[:, t + 1])
    # the last position is what score_all ranks with
    np.testing.assert_allclose(np.asarray(model.score_all(None, history=seq)),
                               np.asarray(model.catalogue_logits(model.sequence(seq)[:, -1])), rtol=1e-6)  # fmt: skip


@pytest.mark.parametrize("loss", ["softmax", "bce"])
def test_loss_is_the_mean_over_real_input_target_positions(loss):
    model, rng = _sasrec(), np.random.default_rng(1)
    b = _batch(rng)
    task = tasks.make({"name": "next_items", "loss": loss, "num_negatives": 2})
    value, metrics = task.loss(model, jax.tree.map(jnp.asarray, b), nnx.Rngs(sampling=4, dropout=0))
    seq = np.concatenate([b["history"], b["label"][:, None]], 1)
    inputs, targets = seq[:, :-1], seq[:, 1:]
    h = model.sequence(jnp.asarray(inputs))
    logits = np.asarray(model.catalogue_logits(h), np.float64)  # [B, L, N]
    per = []
    if loss == "bce":  # the same negatives: the first draw of the sampling stream
        neg = np.asarray(jax.random.randint(nnx.Rngs(sampling=4).sampling(), (*targets.shape, 2), 0, 13))
    for i, t in zip(*np.nonzero((inputs >= 0) & (targets >= 0)), strict=True):
        if loss == "softmax":
            per.append(np.log(np.exp(logits[i, t]).sum()) - logits[i, t, targets[i, t]])
        else:
            sig = lambda x: 1 / (1 + np.exp(-x))
            per.append(-np.log(sig(logits[i, t, targets[i, t]])) - np.log(1 - sig(logits[i, t, neg[i, t]])).sum())
    assert len(per) == ((b["history"] >= 0).sum(1)).sum()  # one target per real history item
    np.testing.assert_allclose(float(value), np.mean(per), rtol=1e-5)
    assert float(metrics["positions"]) == pytest.approx(len(per) / len(b["label"]))


def test_tiny_sasrec_beats_popularity_on_a_sequential_pattern():
    hr, pop_hr = train_and_hit_rate({"name": "next_items", "loss": "softmax"}, _sasrec(40, dim=32, depth=1, max_len=8))
    assert hr > pop_hr + 0.2, (hr, pop_hr)
