"""Recurrent LM (jaxdl.models.language.rnn_lm): cached step-by-step decoding equals the full forward pass (LSTM, GRU),
causality (and its absence in the bidirectional tagger), config errors, and a short run through the trainer on
pydoc_bytes128 with the loss decreasing."""

import baselines
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from run_helpers import short_run

from jaxdl import decode
from jaxdl.models.language.rnn_lm import Model

VOCAB, SEQ = 40, 16


def make(seed=0, **kw):
    kw = dict(input_shape=(SEQ,), num_classes=VOCAB, dim=24, layers=2) | kw
    with nnx.use_eager_sharding(False):
        return Model(**kw, rngs=nnx.Rngs(seed))


def tokens(batch=3, seed=1):
    return jax.random.randint(jax.random.key(seed), (batch, SEQ), 0, VOCAB, jnp.int32)


forward = nnx.jit(lambda model, x: model(x))


@pytest.mark.parametrize("kw", [dict(cell="lstm"), dict(cell="gru", tie_embeddings=True)], ids=["lstm", "gru_tied"])
def test_cached_decoding_equals_full_forward(kw):
    model = make(**kw)
    x = tokens()
    full = forward(model, x)
    assert full.shape == (3, SEQ, VOCAB) and full.dtype == jnp.float32
    step_fn, params = decode.module_step(model)
    step = jax.jit(step_fn)
    logits, cache = step(params, x[:, :5], model.init_cache(3))  # a 5-token prefill, then one token at a time
    outs = [logits]
    for i in range(5, SEQ):
        logits, cache = step(params, x[:, i : i + 1], cache)
        outs.append(logits)
    np.testing.assert_allclose(jnp.concatenate(outs, 1), full, atol=1e-5, rtol=1e-5)


def test_causal_and_bidirectional():
    x = tokens()
    y = x.at[:, 9].set((x[:, 9] + 1) % VOCAB)
    uni, bi = make(), make(bidirectional=True, layers=1)
    a, b = forward(uni, x), forward(uni, y)
    np.testing.assert_array_equal(a[:, :9], b[:, :9])  # the LM never sees the future
    assert float(jnp.abs(a[:, 9:] - b[:, 9:]).max()) > 0
    a, b = forward(bi, x), forward(bi, y)
    assert a.shape == (3, SEQ, VOCAB) and float(jnp.abs(a[:, :9] - b[:, :9]).min(axis=-1).max()) > 0  # the tagger does
    with pytest.raises(ValueError, match="bidirectional"):
        bi.decode_step(x, bi.init_cache(3))


def test_bad_config_raises_naming_the_key():
    with pytest.raises(ValueError, match="cell"):
        make(cell="rnn")
    with pytest.raises(ValueError, match="layers"):
        make(layers=0)
    with pytest.raises(ValueError, match="tie_embeddings"):
        make(tie_embeddings=True, embed_dim=8)
    with pytest.raises(ValueError, match="tokens"):
        make()(x=tokens()[0])


@pytest.mark.slow
def test_trains_through_the_trainer_on_byte_windows(data_dir, tmp_path):
    final, losses = short_run(
        tmp_path / "run", data_dir, data="pydoc_bytes128", batch=16, eval_batch=128, lr=1e-2, steps=60, log_every=15,
        model=dict(name="rnn_lm", cell="lstm", dim=48, layers=1, dropout=0.1), task="lm",
    )  # fmt: skip
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.5, losses
    # it reads the context: below the eval labels' unigram entropy (3.23 nats = 4.66 bits per byte), the floor of a
    # model that sees no context, by baselines.MARGIN (measured: 2.71 after 60 steps; one that sees no context: 3.27)
    floor = baselines.entropy(baselines.eval_labels("pydoc_bytes128", data_dir))
    assert np.isfinite(final["eval/loss"]) and final["eval/loss"] < floor - baselines.MARGIN, (final, floor)
