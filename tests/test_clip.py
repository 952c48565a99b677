"""Fashion-MNIST captions with held-out classes, the zero-shot / retrieval / linear-probe metrics on hand-built
cases, and a short CLIP run whose zero-shot accuracy on seen classes beats chance clearly."""

import os

import numpy as np
import pytest
from run_helpers import short_run

from jaxdl.data import captions, fashion_mnist
from jaxdl.data import fmnist_captions as fc
from jaxdl.evaluators import linear_probe, retrieval, zero_shot


def require_wordnet() -> None:
    """Skips unless Debian's wordnet-base files are there (or $JAXDL_WORDNET_DIR points at them)."""
    try:
        captions.wordnet_dir()
    except FileNotFoundError as e:
        pytest.skip(f"WordNet is not installed: {e}; `apt-get install -y wordnet-base` (launch/setup.sh does it)")


def require_fashion_mnist() -> None:
    try:
        fashion_mnist.raw_dir()
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST is not installed: {e} `apt-get install -y dataset-fashion-mnist`")


def test_wordnet_gloss_reads_the_definition():
    require_wordnet()
    assert captions.wordnet_gloss("sandal") == "a shoe consisting of a sole fastened by straps to the foot"
    # the quoted usage examples and the "(usually in the plural)" note are dropped
    assert captions.wordnet_gloss("trouser") == (
        "a garment extending from the waist to the knee or ankle, covering each leg separately"
    )
    with pytest.raises(ValueError, match="no noun 'flurbo'"):
        captions.wordnet_gloss("flurbo")


def test_training_captions_never_name_a_held_out_class():
    require_wordnet()
    require_fashion_mnist()
    labels = fashion_mnist.read_idx(os.path.join(fashion_mnist.raw_dir(), fashion_mnist.FILES["train"][1]))
    idx, texts = fc.split_examples("train", labels)
    assert len(idx) == 42_000 and not np.isin(labels[idx], fc.HELD_OUT).any()
    # independent of the word matcher: plain substrings of every held-out name, synonym and their stems
    stems = {w.lower() for k in fc.HELD_OUT for w in fc.CLASSES[k].names} | {"trouser", "pant", "slack", "boot"}
    assert not [t for t in texts if any(s in t.lower() for s in stems)]
    assert len(set(texts)) > 200  # the templates x names x attributes x glosses variety reaches training
    # the check is not vacuous: test captions do name the held-out classes, and a seen class's WordNet gloss
    # that mentions one (T-shirt: "a close-fitting pullover shirt") is in its test captions but not in training
    _, test_texts = fc.split_examples("test", labels[:2000])
    assert any("pullover" in t for t in test_texts) and any("ankle boot" in t for t in test_texts)
    assert any("pullover" in t for t in fc.caption_sets("test")[0])
    assert not any("pullover" in t for t in fc.caption_sets("train")[0])


def test_caption_guard_rejects_a_forbidden_own_name_and_overlong_text():
    require_wordnet()
    with pytest.raises(ValueError, match="forbidden"):
        captions.safe_captions(fc.CLASSES[2], ["sweater"])
    with pytest.raises(ValueError, match="bytes"):
        captions.encode(["x" * 20], 8)
    assert captions.mentions("two ankle-boots here", ["ankle boot"]) == ["ankle boot"]
    assert captions.mentions("a bootee", ["boot"]) == []


def test_zero_shot_accuracy_on_a_hand_built_case():
    # class 0 prompts point at +x, class 1 at +y, class 2 at -x (its two prompts average to -x)
    prompt_emb = [
        np.array([[1.0, 0.0]]),
        np.array([[0.0, 1.0], [0.0, 1.0]]),
        np.array([[-0.6, 0.8], [-0.6, -0.8]]),
    ]
    class_emb = zero_shot.class_embeddings(prompt_emb)
    np.testing.assert_allclose(class_emb, [[1, 0], [0, 1], [-1, 0]], atol=1e-6)
    images = np.array([[0.9, 0.1], [0.2, 0.9], [-0.9, 0.3], [0.1, -0.2], [-0.3, 0.2]])
    labels = np.array([0, 1, 2, 2, 1])
    # all 3 classes: predictions 0, 1, 2, 0, 2 -> 3 of 5 right
    assert zero_shot.zero_shot_accuracy(images, labels, class_emb, [0, 1, 2]) == pytest.approx(3 / 5)
    # restricted to classes {1, 2}: images 1, 2, 3, 4; predictions 1, 2, 2, 2 -> 3 of 4 (image 3 is now right)
    assert zero_shot.zero_shot_accuracy(images, labels, class_emb, [1, 2]) == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="no image"):
        zero_shot.zero_shot_accuracy(images, np.array([0, 0, 0, 0, 0]), class_emb, [2])


def test_recall_at_k_matches_brute_force():
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(30, 40))
    relevant = rng.random((30, 40)) < 0.05
    for k in (1, 5):
        brute = np.mean([relevant[q, sorted(range(40), key=lambda j: -sim[q, j])[:k]].any() for q in range(30)])
        assert retrieval.recall_at_k(sim, relevant, k) == pytest.approx(brute)


def test_linear_probe_separates_separable_features():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(size=(300, 5)) + 4 * np.eye(5)[y]
    right = linear_probe.probe_accuracy(x[:200], y[:200], x[200:], y[200:])
    assert right.mean() > 0.95
    noise = linear_probe.probe_accuracy(rng.normal(size=(200, 5)), y[:200], rng.normal(size=(100, 5)), y[200:])
    assert noise.mean() < 0.6  # no signal: near chance 1/3


def test_short_clip_run_beats_chance_zero_shot(tmp_path, data_dir):
    require_wordnet()
    require_fashion_mnist()
    model = dict(
        name="clip",
        embed_dim=32,
        image_depth=8,
        text_length=48,
        text_dim=32,
        text_depth=1,
        text_heads=2,
        text_mlp_dim=64,
    )
    final, losses = short_run(
        tmp_path,
        data_dir,
        data="fmnist_captions",
        model=model,
        task="contrastive",
        steps=60,
        log_every=20,
        batch=64,
        eval_batch=1000,
        lr=3e-3,
    )
    assert losses[-1] < losses[0]
    # the task's default evaluators: zero_shot as "main" (eval/<metric>), retrieval
    chance = final["eval/chance_seen"]
    assert chance == pytest.approx(1 / 7)
    assert final["eval/seen"] > 2.5 * chance, final
    assert final["eval/retrieval/class_i2t_r1"] > 1.5 * final["eval/retrieval/chance_class_r1"], final
