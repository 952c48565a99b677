"""The `attributions` evaluator end to end (jaxdl/evaluators/attributions.py): Adebayo et al.'s randomization check
on a LeNet trained here on real data (sklearn digits upsampled to 28x28), the ViT path with attention rollout, and
option errors. The pieces' unit tests against independent references are in tests/test_explain.py."""

import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from jaxdl import config as config_lib


def _digits_config(data_dir, steps, evals):
    c = config_lib.base()
    c.data.name, c.data.data_dir = "digits", data_dir
    c.data.batch_size, c.data.eval_batch_size = 64, 500
    c.model = ml_collections.ConfigDict({"name": "lenet"})
    c.optim.name, c.optim.lr = "adam", 3e-3
    c.train.steps, c.train.log_every = steps, steps
    c.train.eval_every = c.train.checkpoint_every = 0
    c.train.progress = False
    c.evals = ml_collections.ConfigDict(evals)
    return c


CASCADE = ("head", "fc2", "fc1", "conv2", "conv1")


def test_sanity_check_on_a_trained_lenet(data_dir, tmp_path):
    """The trainer end to end: LeNet, 300 Adam steps on digits, then the `attributions` evaluator. The model has
    learned (accuracy far above the 10 % of a constant guess); IG is complete to 2 % with m = 64; the trained
    model's saliency maps differ clearly from the randomized models' (mean Spearman ρ < 0.6 after the top layer,
    < 0.4 with every layer re-initialized; 0.44 and 0.22 when written) while IG's stay much closer (its x − x' factor: the paper's observation); the PNG and the per-example
    JSON are written."""
    from jaxdl.train import train_and_evaluate

    evals = {
        "main": dict(kind="classify"),
        "ex": dict(kind="attributions", num_examples=24, panels=3, steps=64, cascade=CASCADE),
    }
    final = train_and_evaluate(_digits_config(data_dir, 300, evals), str(tmp_path), devices=jax.devices()[:1])
    assert final["eval/accuracy"] > 0.85, final
    assert final["eval/ex/examples"] == 24
    assert final["eval/ex/ig_completeness_rel"] < 0.02, final
    rho = {m: [final[f"eval/ex/sanity_{m}_{layer}"] for layer in CASCADE] for m in ("saliency", "ig")}
    assert rho["saliency"][0] < 0.6 and rho["saliency"][-1] < 0.4, rho  # gradients pass: they follow the weights
    # IG = (x − x') ⊙ mean gradient: the input factor keeps its maps alike after any re-initialization
    # (Adebayo et al. 2018's finding for gradient ⊙ input and IG); the evaluator must show that, not hide it
    assert min(rho["ig"]) > max(rho["saliency"]) + 0.2, rho
    assert os.path.getsize(tmp_path / "explain" / "attributions_step300.png") > 10_000
    record = json.load(open(tmp_path / "explain" / "attributions_step300.json"))
    assert len(record["rho"]["saliency_head"]) == 24
    np.testing.assert_allclose(np.mean(record["rho"]["ig_head"]), final["eval/ex/sanity_ig_head"], rtol=1e-5)


@pytest.mark.parametrize(
    "spec,message",
    [
        (dict(steps=0), "steps=0 must be >= 1"),
        (dict(rule="simpson"), "rule='simpson'"),
        (dict(target="logit"), "target='logit'"),
        (dict(baseline="blur"), "baseline='blur'"),
        (dict(num_examples=1), "num_examples=1"),
        (dict(cascade=()), "cascade=()"),
    ],
)
def test_bad_options_fail_naming_the_key(data_dir, spec, message):
    from jaxdl import evaluators, tasks

    c = _digits_config(data_dir, 1, {"ex": dict(kind="attributions", **spec)})
    with pytest.raises(ValueError, match=r"config.evals.ex: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        ctx = evaluators.Context(c, tasks.make(c.task), None, {"input_shape": (28, 28, 1)}, *[None] * 5)
        evaluators.make_all({k: v.to_dict() for k, v in c.evals.items()}, ctx)


def test_attributions_evaluator_on_a_vit_writes_rollout(data_dir, tmp_path):
    """The evaluator on a scanned-block ViT (the model is re-merged inside every trace: grad, the IG scan):
    IG complete to 2 % with m = 32 (smooth GELU/LayerNorm model), ρ in [-1, 1], the panel with the rollout column."""
    from jaxdl.train import train_and_evaluate

    c = _digits_config(data_dir, 10, {})
    c.model = ml_collections.ConfigDict(dict(name="vit", patch=7, depth=2, dim=16, heads=2, mlp_dim=32, pool="cls"))
    cascade = ("head", "norm", "blocks")
    c.evals = ml_collections.ConfigDict(
        {"ex": dict(kind="attributions", num_examples=4, panels=2, steps=32, cascade=cascade)}
    )
    final = train_and_evaluate(c, str(tmp_path), devices=jax.devices()[:1])
    assert final["eval/ex/ig_completeness_rel"] < 0.02, final
    for method in ("saliency", "ig"):
        for layer in cascade:
            assert -1.0 <= final[f"eval/ex/sanity_{method}_{layer}"] <= 1.0
    assert os.path.getsize(tmp_path / "explain" / "attributions_step10.png") > 5_000
    rollout = np.array(json.load(open(tmp_path / "explain" / "attributions_step10.json"))["rollout"])
    assert rollout.shape == (4, 16) and np.all(rollout >= 0)  # 4 examples x 16 patches (class token dropped)
    assert np.all(rollout.sum(1) < 1.0) and np.all(rollout.sum(1) > 0.1)  # the class token keeps the rest
