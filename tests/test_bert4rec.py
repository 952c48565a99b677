"""BERT4Rec (jaxdl/models/recsys/bert4rec.py) and the masked-item task (jaxdl/tasks/masked_items.py): Cloze masking
never touches padding, the loss counts exactly the masked positions (numpy reference), shapes and the
bidirectional / [mask]-appended scoring, and a tiny run beats popularity on a synthetic sequential pattern
(jaxdl/data/zipf_interactions.py, where the next item is a fixed successor 80 % of the time)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from sequential_helpers import train_and_hit_rate

from jaxdl import models, tasks
from jaxdl.tasks.masked_items import cloze


def _model(name="bert4rec", num_items=11, **kw):
    cfg = dict(name=name, num_users=1, dim=16, depth=1, heads=2, mlp_dim=32, max_len=6, dropout=0.0) | kw
    with nnx.use_eager_sharding(False):
        return models.make(ml_collections.ConfigDict(cfg), input_shape=(), num_classes=num_items, rngs=nnx.Rngs(0))


def _padded_tokens(rng, batch=64, length=12, num_items=30):
    lengths = rng.integers(0, length + 1, batch)
    tokens = rng.integers(0, num_items, (batch, length))
    return np.where(np.arange(length)[None] >= length - lengths[:, None], tokens, -1).astype(np.int32)


def test_cloze_masks_only_real_items_at_the_requested_rate():
    rng = np.random.default_rng(0)
    tokens = _padded_tokens(rng, batch=512)
    inputs, weights = (np.asarray(a) for a in cloze(jax.random.key(1), jnp.asarray(tokens), 99, 0.3))
    pad, masked = tokens < 0, weights > 0
    assert not masked[pad].any()  # padding is never masked
    np.testing.assert_array_equal(inputs[pad], -1)
    np.testing.assert_array_equal(inputs[masked], 99)  # masked items become [mask] ...
    np.testing.assert_array_equal(inputs[~masked], tokens[~masked])  # ... and nothing else changes
    rate, n = masked[~pad].mean(), (~pad).sum()
    assert abs(rate - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n), (rate, n)  # binomial: 4 sigma
    # last_prob=1: each row masks only its last item (when real)
    inputs, weights = (np.asarray(a) for a in cloze(jax.random.key(2), jnp.asarray(tokens), 99, 0.3, 1.0))
    np.testing.assert_array_equal(weights[:, :-1], 0)
    np.testing.assert_array_equal(weights[:, -1], tokens[:, -1] >= 0)


def test_masked_loss_counts_only_the_masked_positions():
    """The task's loss == numpy mean over the positions holding [mask] of -log softmax(logits)[original item]."""
    num_items = 11
    model = _model(num_items=num_items, max_len=6)
    rng = np.random.default_rng(3)
    history = _padded_tokens(rng, batch=8, length=6, num_items=num_items)
    label = rng.integers(0, num_items, 8).astype(np.int32)
    batch = {"input": jnp.zeros(8, jnp.int32), "label": jnp.asarray(label), "history": jnp.asarray(history)}
    task = tasks.make({"name": "masked_items", "mask_prob": 0.4})
    loss, metrics = task.loss(model, batch, nnx.Rngs(sampling=5, dropout=0))
    # the same masks, from the same first draw of the sampling stream
    tokens = np.concatenate([history[:, 1:], label[:, None]], 1)
    inputs, _ = cloze(nnx.Rngs(sampling=5, dropout=0).sampling(), jnp.asarray(tokens), model.mask_id, 0.4)
    inputs = np.asarray(inputs)
    at = inputs == model.mask_id  # independent of the task's weights: where the model sees [mask]
    assert at.sum() >= 3 and not at[tokens < 0].any()
    logits = np.asarray(model.catalogue_logits(model.sequence(jnp.asarray(inputs))), np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.mean(np.take_along_axis(logp, np.maximum(tokens, 0)[..., None], -1)[..., 0][at])
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    assert float(metrics["masked"]) == pytest.approx(at.sum() / 8)


def test_shapes_and_bidirectional_scoring_with_an_appended_mask():
    num_items, model = 11, _model(num_items=11, max_len=6)
    assert model.item_emb.shape == (num_items + 1, 16) and model.mask_id == num_items  # + the [mask] row
    rng = np.random.default_rng(0)
    history = jnp.asarray(_padded_tokens(rng, batch=5, length=6, num_items=num_items))
    items = jnp.asarray(rng.integers(0, num_items, (5, 3)), jnp.int32)
    user = jnp.zeros(5, jnp.int32)
    h = model.sequence(history)
    assert h.shape == (5, 6, 16) and h.dtype == jnp.float32
    full = np.asarray(model.score_all(user, history=history))
    assert full.shape == (5, num_items) and np.isfinite(full).all()  # the [mask] row is never a candidate
    np.testing.assert_allclose(np.asarray(model.score(user, items, history=history)),
                               np.take_along_axis(full, np.asarray(items), 1), rtol=1e-5, atol=1e-6)  # fmt: skip
    # scoring = the output at [mask] appended after history[1:]
    appended = jnp.concatenate([history[:, 1:], jnp.full((5, 1), model.mask_id, jnp.int32)], 1)
    np.testing.assert_allclose(full, np.asarray(model.catalogue_logits(model.sequence(appended)[:, -1])), rtol=1e-6)
    # bidirectional: position 0 of a full sequence sees the last item (SASRec's causal position 0 does not)
    seq = jnp.asarray(rng.integers(0, num_items, (2, 6)), jnp.int32)
    changed = seq.at[:, -1].set((seq[:, -1] + 1) % num_items)
    assert not np.allclose(np.asarray(model.sequence(seq)[:, 0]), np.asarray(model.sequence(changed)[:, 0]))
    causal = _model("sasrec", num_items=num_items)
    np.testing.assert_allclose(np.asarray(causal.sequence(seq)[:, 0]), np.asarray(causal.sequence(changed)[:, 0]))


def test_tiny_bert4rec_beats_popularity_on_a_sequential_pattern():
    model = _model(num_items=40, dim=32, max_len=8)
    hr, pop_hr = train_and_hit_rate({"name": "masked_items", "mask_prob": 0.3, "last_prob": 0.1}, model)
    assert hr > pop_hr + 0.2, (hr, pop_hr)
