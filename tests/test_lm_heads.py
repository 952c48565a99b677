"""Large-vocabulary output heads in the language models and the trainer (jaxdl/models/language/_lm_head.py, the
`uses_label_losses` protocol of jaxdl/train.py): short trainer runs of gpt / rnn_lm with each head beat the uniform
loss; the hierarchical head's trainer loss is -mean exact log p(label) (ignored labels and masked rows excluded,
gradient accumulation = mean of microbatch means); the sampled head's trainer loss with every id as a negative is
the exact cross-entropy, and its eval loss/accuracy are the full softmax's over the same (tied) weights; a
config without `head` keeps the old parameters and numbers; generation runs on the exact distribution; token counts
come from the train split; bad config values raise errors naming the key."""

import json

import baselines
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from run_helpers import short_run

from jaxdl import config as config_lib
from jaxdl import data, decode, models, optim
from jaxdl.evaluators.classify import make_eval_step
from jaxdl.state import make_train_step

VOCAB, SEQ = 40, 12
TINY = {
    "gpt": dict(name="gpt", dim=32, heads=4, depth=1, mlp_dim=64),
    "rnn_lm": dict(name="rnn_lm", cell="lstm", dim=32, layers=1),
}
COUNTS = np.arange(VOCAB)[::-1] * 3 + 1  # id 0 the most frequent


def build(model: dict, *, counts=COUNTS, seed=0, vocab=VOCAB):
    with nnx.use_eager_sharding(False):
        return models.make(model, input_shape=(SEQ,), num_classes=vocab, rngs=nnx.Rngs(seed), label_counts=counts)


def batch(rows=4, seed=1):
    x = jax.random.randint(jax.random.key(seed), (rows, SEQ), 0, VOCAB, jnp.int32)
    y = jax.random.randint(jax.random.key(seed + 1), (rows, SEQ), 0, VOCAB, jnp.int32)
    y = y.at[0, :5].set(-1).at[2, 7].set(-1)  # ignored labels
    return x, y


def step_and_state(model, accum=1):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    cfg = config_lib.base()
    cfg.optim.name, cfg.train.grad_accum, cfg.task.name = "sgd", accum, "lm"
    tx, schedule = optim.make_optimizer(cfg.optim, 10)
    step = jax.jit(make_train_step(graphdef, tx, schedule, cfg))
    state = dict(params=params, rest=rest, opt_state=tx.init(params), step=jnp.int32(0),
                 rng=jax.random.key_data(jax.random.key(0)))  # fmt: skip
    return step, state, graphdef


def exact_nll(model, x, y):
    """-log p(y) [rows, seq] from the model's exact distribution (its logits, through log_softmax)."""
    logp = jax.nn.log_softmax(model(x), axis=-1)
    return -jnp.take_along_axis(logp, jnp.maximum(y, 0)[..., None], -1)[..., 0]


@pytest.mark.parametrize(
    "name,head,lr,steps",
    [
        ("gpt", dict(head="sampled", num_sampled=64), 1e-2, 80),  # tied embeddings (gpt's default), unigram proposal
        ("rnn_lm", dict(head="sampled", num_sampled=64, sample_unique=False), 2e-2, 100),  # with replacement
        ("rnn_lm", dict(head="hierarchical"), 1e-2, 30),  # Huffman tree from the train split's token counts
    ],
    ids=["gpt-sampled", "rnn_lm-sampled", "rnn_lm-hierarchical"],
)
def test_trains_through_the_trainer(name, head, lr, steps, data_dir, tmp_path):
    final, losses = short_run(
        tmp_path / "run", data_dir, data="pydoc_bytes128", batch=16, eval_batch=64, lr=lr, steps=steps, log_every=10,
        model=TINY[name] | head, task="lm", devices=jax.devices() if name == "gpt" else None,  # gpt: DP on 8
    )  # fmt: skip
    assert len(losses) == steps // 10 and all(np.isfinite(losses)), losses
    # The eval loss is the exact (full-softmax) one. It reads the context: below the eval labels' unigram entropy
    # (3.23 nats), the floor of a model that sees no context, by baselines.MARGIN (measured: gpt-sampled 2.81,
    # rnn_lm-sampled 2.78, rnn_lm-hierarchical 2.66; the sampled heads need 64 negatives and 80-100 steps for it)
    labels = baselines.eval_labels("pydoc_bytes128", data_dir)
    floor = baselines.entropy(labels)
    assert final["eval/loss"] < floor - baselines.MARGIN, (final, floor)
    # exact argmax over all 256 bytes: better than always predicting the most frequent byte (0.20)
    assert baselines.majority_accuracy(labels) < final["eval/accuracy"] <= 1, final
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert not any("train/accuracy" in r for r in records)  # never a number the head cannot compute exactly


def test_no_head_key_keeps_the_old_model():
    for name in TINY:
        old, new = build(TINY[name]), build(TINY[name] | dict(head="full"))
        assert not old.uses_label_losses
        shapes = lambda m: jax.tree.map(jnp.shape, nnx.to_pure_dict(nnx.state(m, nnx.Param)))
        assert shapes(old) == shapes(new)
        x, y = batch()
        np.testing.assert_array_equal(old(x), new(x))
        # label_losses of the full head = the cross-entropy of its logits
        np.testing.assert_allclose(new.label_losses(x, y), jnp.where(y < 0, 0, exact_nll(new, x, y)), atol=1e-5)


@pytest.mark.parametrize("name", ["gpt", "rnn_lm"])
def test_hierarchical_trainer_loss_is_mean_exact_nll(name):
    model = build(TINY[name] | dict(head="hierarchical", tie_embeddings=False))
    x, y = batch()
    mask = jnp.array([1.0, 1.0, 0.0, 1.0])  # row 2 is padding
    nll = exact_nll(model, x, y)  # through log_probs [.., V, depth], not the per-path gather the trainer uses
    valid = (y >= 0) * mask[:, None]
    step, state, _ = step_and_state(model)
    _, metrics = step(state, {"input": x, "label": y, "mask": mask})
    np.testing.assert_allclose(metrics["loss"], (nll * valid).sum() / valid.sum(), rtol=1e-5)
    assert "accuracy" not in metrics and int(metrics["first_nonfinite"]) == -1
    # gradient accumulation: the mean of the microbatch means (rows i::2), as on the logits path
    step2, state2, _ = step_and_state(model, accum=2)
    _, metrics2 = step2(state2, {"input": x, "label": y, "mask": mask})
    micro = [(nll[i::2] * valid[i::2]).sum() / valid[i::2].sum() for i in range(2)]
    np.testing.assert_allclose(metrics2["loss"], np.mean(micro), rtol=1e-5)


def test_sampled_trainer_loss_with_every_id_as_negative_is_the_exact_cross_entropy():
    """K = V negatives without replacement: every id is drawn (expected count 1, log Q = 0) and the target's own
    draw is removed as an accidental hit, so the sampled loss is the full softmax cross-entropy."""
    model = build(TINY["gpt"] | dict(head="sampled", num_sampled=VOCAB, proposal="uniform"))
    x, y = batch()
    nll, valid = exact_nll(model, x, y), (y >= 0)
    step, state, _ = step_and_state(model)
    _, metrics = step(state, {"input": x, "label": y})
    np.testing.assert_allclose(metrics["loss"], (nll * valid).sum() / valid.sum(), rtol=1e-5)


def test_sampled_eval_is_the_full_softmax_of_the_same_tied_weights():
    model = build(TINY["gpt"] | dict(head="sampled", num_sampled=8))  # tie_embeddings=True
    params = nnx.state(model, nnx.Param)
    assert model.head.kernel is model.embed.embedding and "kernel" not in params["head"]  # one shared Param
    x, y = batch()
    mask = jnp.array([1.0, 0.0, 1.0, 1.0])
    step, state, graphdef = step_and_state(model)
    new, metrics = step(state, {"input": x, "label": y})  # one sampled training step
    assert np.isfinite(metrics["loss"]) and int(metrics["first_nonfinite"]) == -1
    assert not np.allclose(new["params"]["head"]["bias"][...], 0.0)  # the head's own bias trains
    trained = nnx.merge(graphdef, new["params"], new["rest"])
    out = jax.jit(make_eval_step(graphdef))(new["params"], new["rest"], {"input": x, "label": y, "mask": mask})
    # reference: h E^T + b from the trained weights, by hand, and optax's cross-entropy
    h = trained.norm(trained._hidden(x, False, None))
    logits = h @ new["params"]["embed"]["embedding"][...].T + new["params"]["head"]["bias"][...]
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(y, 0))
    valid = (y >= 0) * mask[:, None]
    np.testing.assert_allclose(out["loss_sum"] / out["count"], (nll * valid).sum() / valid.sum(), rtol=1e-5)
    correct = ((jnp.argmax(logits, -1) == y) * valid).sum()
    assert float(out["correct"]) == float(correct) and float(out["count"]) == float(valid.sum())


@pytest.mark.parametrize(
    "name,head",
    [("gpt", "sampled"), ("gpt", "hierarchical"), ("rnn_lm", "sampled"), ("rnn_lm", "hierarchical")],
)
def test_generation_uses_the_exact_distribution(name, head):
    model = build(TINY[name] | dict(head=head, tie_embeddings=False, num_sampled=8))
    x, _ = batch(rows=2)
    full = model(x)
    if head == "hierarchical":  # its logits are the exact log-probabilities, already normalized
        np.testing.assert_allclose(jax.scipy.special.logsumexp(full, -1), 0.0, atol=1e-5)
    step_fn, params = decode.module_step(model)
    cache = model.init_cache(2, SEQ) if name == "gpt" else model.init_cache(2)
    logits, cache = jax.jit(step_fn)(params, x[:, :5], cache)
    rest, _ = jax.jit(step_fn)(params, x[:, 5:], cache)
    np.testing.assert_allclose(jnp.concatenate([logits, rest], 1), full, atol=1e-5)
    fresh = model.init_cache(2, SEQ) if name == "gpt" else model.init_cache(2)
    tokens = decode.generate(step_fn, params, x[:, :3], fresh, max_new_tokens=4)
    assert tokens.shape == (2, 4)
    np.testing.assert_array_equal(tokens[:, 0], jnp.argmax(full[:, 2], -1))  # greedy = argmax of exact log p


def test_token_counts_come_from_the_train_split(data_dir):
    counts = data.label_counts("pydoc_bytes128", "train", data_dir)
    source = data.load("pydoc_bytes128", "train", data_dir)
    labels = np.stack([np.asarray(source[i]["label"]) for i in range(len(source))])
    np.testing.assert_array_equal(counts, np.bincount(labels.ravel(), minlength=256))
    model = build(TINY["gpt"] | dict(head="hierarchical", tie_embeddings=False), counts=lambda: counts, vocab=256)
    depth = np.asarray(model.head.mask[...]).sum(1)  # Huffman: frequent bytes get short paths
    assert depth[np.argmax(counts)] <= depth[np.argmin(counts)] - 3


def test_bad_config_raises_naming_the_key():
    gpt = TINY["gpt"]
    cases = [
        (dict(head="softmax"), "config.model.head"),
        (dict(head="sampled", proposal="zipf"), "config.model.proposal"),
        (dict(head="hierarchical", tree="random", tie_embeddings=False), "config.model.tree"),
        (dict(head="hierarchical"), "config.model.tie_embeddings"),  # gpt ties by default
        (dict(head="sampled", num_sampled=0), "config.model.num_sampled"),
        (dict(head="sampled", num_sampled=VOCAB + 1), "config.model.num_sampled"),
    ]
    for kw, key in cases:
        with pytest.raises(ValueError, match=key):
            build(gpt | kw)
    with pytest.raises(ValueError, match="config.model.proposal='unigram' needs the training data's token counts"):
        build(gpt | dict(head="sampled", num_sampled=8), counts=None)
    with pytest.raises(ValueError, match="config.model.tree='huffman' needs"):
        build(TINY["rnn_lm"] | dict(head="hierarchical"), counts=None)
    with pytest.raises(ValueError, match="label_counts has shape"):
        build(gpt | dict(head="sampled", num_sampled=8), counts=np.ones(VOCAB + 1))
    build(gpt | dict(head="sampled", num_sampled=8, proposal="log_uniform"), counts=None)  # needs no counts
    c = config_lib.base()
    c.data.name, c.model = "pydoc_bytes128", gpt | dict(head="sampled", label_counts=[1, 2])
    with pytest.raises(ValueError, match="config.model.label_counts is not an argument"):
        config_lib.validate(c)
