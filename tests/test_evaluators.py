"""Evaluators chosen in config.evals: cadence and metric keys through the trainer, clear errors for bad specs,
BLEU against a hand computation of its formula, and `python -m jaxdl.evaluate` reproducing what the trainer logged
from a restored checkpoint."""

import collections
import json
import math
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from jaxdl import config as config_lib
from jaxdl.evaluate import evaluate
from jaxdl.evaluators.translate import byte_text, corpus_bleu, exact_match
from jaxdl.metrics import read_metrics
from jaxdl.train import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config(data_dir, **evals):
    c = config_lib.base()
    c.data.name, c.data.data_dir = "mnist1d", data_dir
    c.data.batch_size, c.data.eval_batch_size = 32, 200
    c.model = ml_collections.ConfigDict({"name": "mlp"})
    c.optim.lr = 3e-3
    c.train.steps, c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 20, 10, 10, 10
    c.train.progress = False
    c.evals = ml_collections.ConfigDict(evals)
    return c


def test_cadence_keys_and_consistency(data_dir, tmp_path):
    c = config(data_dir, main={"kind": "classify"}, ppl={"kind": "perplexity", "every": 5, "unit": "byte"},
               last={"kind": "classify", "every": 0, "split": "train", "batch_size": 400})  # fmt: skip
    final = train_and_evaluate(c, str(tmp_path))
    by_step = collections.defaultdict(dict)
    for r in read_metrics(tmp_path):
        by_step[r["step"]] |= {k: v for k, v in r.items() if k.startswith("eval/")}
    assert sorted(s for s, r in by_step.items() if "eval/ppl/perplexity" in r) == [5, 10, 15, 20]
    assert sorted(s for s, r in by_step.items() if "eval/accuracy" in r) == [10, 20]
    assert sorted(s for s, r in by_step.items() if "eval/last/accuracy" in r) == [20]
    assert set(by_step[20]) == {
        "eval/accuracy", "eval/loss", "eval/ppl/loss", "eval/ppl/perplexity", "eval/ppl/bits_per_byte",
        "eval/ppl/accuracy", "eval/last/accuracy", "eval/last/loss",
    }  # fmt: skip
    r = by_step[20]
    assert r["eval/ppl/loss"] == pytest.approx(r["eval/loss"], rel=1e-6)  # same split, same model
    assert r["eval/ppl/perplexity"] == pytest.approx(math.exp(r["eval/loss"]), rel=1e-6)
    assert r["eval/ppl/bits_per_byte"] == pytest.approx(r["eval/loss"] / math.log(2), rel=1e-6)
    assert r["eval/last/loss"] != r["eval/loss"]  # the train split is another set of examples
    assert final == {k: v for k, v in r.items()}

    # python -m jaxdl.evaluate: the same numbers from the restored checkpoints (an independent path)
    again = evaluate(str(tmp_path), ["main", "ppl"], step=10, devices=jax.devices()[:1])
    assert again["eval/accuracy"] == pytest.approx(by_step[10]["eval/accuracy"], abs=1e-7)
    assert again["eval/ppl/loss"] == pytest.approx(by_step[10]["eval/ppl/loss"], rel=1e-6)
    assert json.load(open(tmp_path / "evaluate_step10.json"))["step"] == 10
    with pytest.raises(ValueError, match=r"--evals: \['beam'\] not among"):
        evaluate(str(tmp_path), ["beam"])


@pytest.mark.parametrize(
    "evals, message",
    [
        ({"x": {"kind": "bleu"}}, r"config.evals.x.kind: evaluator kind 'bleu' is not one of"),
        ({"x": {"kind": "classify", "beam": 4}}, r"config.evals.x.beam is not an option of evaluator 'classify'"),
        ({"x": {"every": 4}}, r"config.evals.x must be a dict with a 'kind'"),
    ],
)
def test_bad_specs_fail_at_validation(data_dir, evals, message):
    with pytest.raises(ValueError, match=message):
        config_lib.validate(config(data_dir, **evals))


def _ngrams(words, n):
    return collections.Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def test_bleu_matches_the_formula_by_hand():
    hyps = ["the cat sat on the mat today", "a quick brown fox jumps"]
    refs = ["the cat sat on a mat today", "the quick brown fox jumps over"]
    # Papineni et al. 2002: clipped n-gram precisions over the corpus, geometric mean, brevity penalty
    log_p = 0.0
    for n in range(1, 5):
        match = total = 0
        for h, r in zip(hyps, refs, strict=True):
            hc, rc = _ngrams(h.split(), n), _ngrams(r.split(), n)
            match += sum(min(c, rc[g]) for g, c in hc.items())
            total += sum(hc.values())
        log_p += math.log(match / total) / 4
    hyp_len, ref_len = sum(len(h.split()) for h in hyps), sum(len(r.split()) for r in refs)
    bp = min(1.0, math.exp(1 - ref_len / hyp_len))
    assert corpus_bleu(hyps, refs, tokenize="none") == pytest.approx(100 * bp * math.exp(log_p), rel=1e-9)
    assert corpus_bleu(refs, refs) == pytest.approx(100.0)


def test_exact_match_and_byte_text():
    eos = 258
    label = np.array([[51, 50, eos, -1], [49, eos, -1, -1]])
    pred = np.array([[51, 50, eos, 7, 7], [49, 48, eos, 256, 256]])  # anything after EOS is ignored
    np.testing.assert_array_equal(exact_match(pred, label, eos), [True, False])
    assert byte_text(pred[0]) == "32" and byte_text(label[1]) == "1"
    with pytest.raises(ValueError, match="exact_match: expected pred"):
        exact_match(pred[0], label, eos)


def test_config_module_imports_nothing_heavy():
    code = (
        "import sys, jaxdl.config; heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow_datasets', 'kernels', 'jax', 'flax', 'tensorflow')]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
