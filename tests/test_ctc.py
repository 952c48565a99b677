"""CTC: the `ctc` task's loss against a brute-force sum over every frame alignment; the loss and its gradients
on 8 data-parallel devices equal to one device; CTC decoding (greedy, prefix beam search, beam + n-gram LM)
against brute-force enumeration of every alignment; CER/WER against an independent edit distance."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxdl.audio import ctc_decode
from jaxdl.evaluators.asr import error_rates, fit_lm
from jaxdl.tasks.ctc import Task, ctc_terms


def _collapse(path, blank=0):
    return tuple(k for k, _ in itertools.groupby(path) if k != blank)


def _brute_force(log_probs: np.ndarray, blank: int = 0) -> dict[tuple[int, ...], float]:
    """labelling -> log p_ctc(labelling | x): the sum over all vocab^frames paths (float64)."""
    t, v = log_probs.shape
    out: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(v), repeat=t):
        lp = float(sum(log_probs[i, p] for i, p in enumerate(path)))
        key = _collapse(path, blank)
        out[key] = np.logaddexp(out.get(key, -np.inf), lp)
    return out


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


def test_ctc_loss_matches_brute_force_sum_over_alignments():
    rng = np.random.default_rng(0)
    frames, vocab = 5, 4
    logits = rng.normal(size=(4, frames + 2, vocab)).astype(np.float32) * 2  # 2 padding frames in the array
    out_len = np.array([5, 5, 4, 3], np.int32)
    labels = np.array([[1, 2, -1], [2, 2, 3], [3, -1, -1], [1, 1, -1]], np.int32)  # repeats need a blank between
    terms = ctc_terms(jnp.asarray(logits), jnp.asarray(out_len), jnp.asarray(labels))
    for b in range(4):
        table = _brute_force(_log_softmax(logits[b, : out_len[b]]))
        target = tuple(int(c) for c in labels[b] if c >= 0)
        np.testing.assert_allclose(float(terms["nll"][b]), -table[target], rtol=2e-5, atol=2e-5)
    assert terms["label_length"].tolist() == [2, 3, 1, 2]
    # [1, 1] needs 3 frames: feasible at 3; [2, 2, 3] needs 4 of 5
    assert terms["infeasible"].tolist() == [False, False, False, False]
    short = ctc_terms(jnp.asarray(logits), jnp.asarray([5, 3, 4, 2], np.int32), jnp.asarray(labels))
    assert short["infeasible"].tolist() == [False, True, False, True]


def _tiny_model(rngs_seed=0, samples=1600):
    from jaxdl.models.speech.deepspeech import Model

    with nnx.use_eager_sharding(False):
        return Model(
            input_shape=(samples,),
            num_classes=6,
            n_mels=16,
            channels=4,
            hidden=8,
            layers=1,
            dropout=0.0,
            specaugment=False,
            rngs=nnx.Rngs(rngs_seed),
        )


def test_ctc_task_data_parallel_8_devices_equals_1_device():
    assert len(jax.devices()) == 8
    rng = np.random.default_rng(1)
    model = _tiny_model(samples=800)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    task = Task()
    lengths = rng.integers(400, 801, 8).astype(np.int32)
    x = rng.normal(size=(8, 800)).astype(np.float32) * 0.1 * (np.arange(800)[None] < lengths[:, None])
    labels = np.full((8, 3), -1, np.int32)
    for i in range(8):
        n = rng.integers(1, 3)  # <= 3 frames needed: the shortest utterance has 3 output frames
        labels[i, :n] = rng.integers(1, 6, n)
    batch = {"input": x, "input_length": lengths, "label": labels}

    def loss_and_grad(params, batch):
        def f(p):
            return task.loss(nnx.merge(graphdef, p, rest), batch, nnx.Rngs(dropout=0))[0]

        return jax.value_and_grad(f)(params)

    one = jax.jit(loss_and_grad)(params, jax.device_put(batch, jax.devices()[0]))
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    sharded = jax.device_put(batch, NamedSharding(mesh, PartitionSpec("data")))
    replicated = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
    eight = jax.jit(loss_and_grad)(replicated, sharded)
    assert len(sharded["input"].sharding.device_set) == 8
    np.testing.assert_allclose(float(eight[0]), float(one[0]), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(eight[1]), jax.tree.leaves(one[1]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(one[1]))
    assert float(one[0]) < 100  # every label is alignable (an infeasible one costs ~1e5)


def test_ctc_task_ignores_padding_rows_and_padding_samples():
    """Changing the padded samples of an utterance or a row with mask 0 leaves the loss unchanged."""
    rng = np.random.default_rng(2)
    model = _tiny_model()
    task = Task()
    lengths = np.array([900, 1600, 1200, 1000], np.int32)
    x = rng.normal(size=(4, 1600)).astype(np.float32) * 0.1 * (np.arange(1600)[None] < lengths[:, None])
    labels = np.array([[1, 2, -1], [3, 3, 4], [5, -1, -1], [2, 1, 2]], np.int32)
    batch = {"input": x, "input_length": lengths, "label": labels, "mask": np.array([1, 1, 1, 0], np.float32)}
    base = float(task.loss(model, batch, nnx.Rngs(dropout=0))[0])
    noisy = dict(batch, input=np.where(np.arange(1600)[None] < lengths[:, None], x, 0.3))
    noisy["input"][3] = rng.normal(size=1600)  # the padding row
    np.testing.assert_allclose(float(task.loss(model, noisy, nnx.Rngs(dropout=0))[0]), base, rtol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_prefix_beam_search_without_pruning_is_exact(seed):
    """A beam wide enough to keep every prefix returns the exact CTC probability of every labelling."""
    rng = np.random.default_rng(seed)
    lp = _log_softmax(rng.normal(size=(4, 3)) * 1.5)
    exact = _brute_force(lp)
    beams = ctc_decode.prefix_beam_search(lp, beam_size=64)
    assert len(beams) == len(exact)  # the 15 labellings of two characters that fit 4 frames (repeats need a blank)
    for prefix, score in beams:
        np.testing.assert_allclose(score, exact[prefix], rtol=1e-9, atol=1e-9)
    best = max(exact, key=exact.get)
    assert beams[0][0] == best


def test_small_beam_finds_the_most_probable_labelling_when_best_path_does_not():
    """Two frames of "a" at 0.4 + blank 0.3 (+"b" 0.3): best path is "a"... while "" or other merges may win; the
    beam agrees with brute force where greedy may not."""
    hits, greedy_misses = 0, 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        lp = _log_softmax(rng.normal(size=(5, 3)) * 0.8)
        exact = _brute_force(lp)
        best = max(exact, key=exact.get)
        hits += ctc_decode.prefix_beam_search(lp, beam_size=8)[0][0] == best
        greedy_misses += ctc_decode.greedy(lp) != best
    assert hits >= 38 and greedy_misses >= 5  # the beam is (nearly always) exact; best path often is not


def test_beam_1_equals_greedy_on_confident_frames():
    rng = np.random.default_rng(3)
    for _ in range(30):
        t, v = 12, 5
        winners = rng.integers(0, v, t)
        probs = rng.dirichlet(np.ones(v), t) * 0.08
        probs[np.arange(t), winners] += 0.92  # the frame's argmax has probability >= 0.92
        lp = np.log(probs)
        assert ctc_decode.prefix_beam_search(lp, beam_size=1)[0][0] == ctc_decode.greedy(lp)


def test_greedy_collapses_repeats_and_blanks():
    lp = np.log(np.eye(4)[[1, 1, 0, 1, 2, 2, 0, 0, 3]] * 0.97 + 0.01)
    assert ctc_decode.greedy(lp) == (1, 1, 2, 3)


def test_lm_fusion_matches_brute_force_rescoring():
    """Unpruned beam + LM ranks labellings by log p_ctc + w log p_lm(l, end boundary) + bonus |l| exactly."""
    rng = np.random.default_rng(4)
    vocab, boundary = 3, 1  # blank 0, "space" 1, one letter 2
    lm = fit_lm([[2, 2, 1, 2, -1], [2, 1, 2, 2]], vocab, boundary, order=2, smoothing="addk")
    lp = _log_softmax(rng.normal(size=(4, vocab)))
    w, bonus = 0.7, 0.3
    exact = _brute_force(lp)

    def lm_logp(lab):
        seq = [boundary, *lab, boundary]
        return float(sum(np.log(lm.prob(seq[:i], seq[i])) for i in range(1, len(seq))))

    fused = {lab: s + w * lm_logp(lab) + bonus * len(lab) for lab, s in exact.items()}
    beams = ctc_decode.prefix_beam_search(lp, beam_size=64, lm=lm, lm_weight=w, length_bonus=bonus, boundary=boundary)
    assert len(beams) == len(fused)
    for prefix, score in beams:
        np.testing.assert_allclose(score, fused[prefix], rtol=1e-9, atol=1e-9)
    assert beams[0][0] == max(fused, key=fused.get)
    # weight 0 and no bonus: the plain beam search
    plain = ctc_decode.prefix_beam_search(lp, beam_size=64)
    zero = ctc_decode.prefix_beam_search(lp, beam_size=64, lm=lm, lm_weight=0.0)
    assert [p for p, _ in plain] == [p for p, _ in zero]


def test_decoder_errors_are_named():
    with pytest.raises(ValueError, match="beam_lm.*needs an n-gram LM"):
        ctc_decode.decode(np.zeros((3, 3)), "beam_lm")
    with pytest.raises(ValueError, match="decoder 'viterbi' is unknown"):
        ctc_decode.decode(np.zeros((3, 3)), "viterbi")
    lm = fit_lm([[1, 2]], 4, 1, order=2, smoothing="kn")
    with pytest.raises(ValueError, match="vocab_size 4, the CTC outputs 3"):
        ctc_decode.prefix_beam_search(np.zeros((3, 3)), lm=lm, lm_weight=1.0)


def _levenshtein(a, b) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1]


def test_error_rates_match_an_independent_edit_distance():
    refs = ["press one now", "the pound key", "goodbye"]
    hyps = ["pres on now", "the pound key please", ""]
    got = error_rates(refs, hyps)
    cer = sum(_levenshtein(r, h) for r, h in zip(refs, hyps, strict=True)) / sum(len(r) for r in refs)
    wer = sum(_levenshtein(r.split(), h.split()) for r, h in zip(refs, hyps, strict=True)) / sum(
        len(r.split()) for r in refs
    )
    assert got["cer"] == pytest.approx(cer) and got["wer"] == pytest.approx(wer)
    with pytest.raises(ValueError, match="empty reference"):
        error_rates([""], ["a"])
