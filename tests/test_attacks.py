"""FGSM / PGD (jaxdl.robust.attacks), the `robustness` evaluator and the `adversarial` task.

References: the ε-ball and image-range constraints checked directly in pixel space; FGSM of a linear model against
its closed-form input gradient W (softmax - onehot) / std; attack strength on a small MLP trained here on real
data (sklearn digits upsampled to 28x28, jaxdl.data.digits): accuracy falls with ε and PGD ≤ FGSM."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl import config as config_lib
from jaxdl import models
from jaxdl.data import digits
from jaxdl.evaluators.robustness import per_example_xent
from jaxdl.robust import attacks

SPACE = attacks.input_space("digits")


@pytest.fixture(scope="module")
def trained():
    """(model, x [600, 28, 28, 1] normalized test inputs, labels [600]) of an MLP trained 150 full-batch Adam steps
    on the other 1,197 digits (about 95 % clean test accuracy)."""
    images, labels = digits.images_and_labels()
    x = digits.preprocess({"image": images[..., None], "label": labels})
    xs, ys = jnp.asarray(x["input"]), jnp.asarray(x["label"])
    with nnx.use_eager_sharding(False):
        model = models.make(
            {"name": "mlp", "hidden": (64,)}, input_shape=(28, 28, 1), num_classes=10, rngs=nnx.Rngs(params=0)
        )
    graphdef, params = nnx.split(model)
    tx = optax.adam(3e-3)

    @jax.jit
    def step(params, opt):
        loss = lambda p: jnp.mean(per_example_xent(nnx.merge(graphdef, p))(xs[600:], ys[600:]))
        g = jax.grad(loss)(params)
        upd, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, upd), opt

    opt = tx.init(params)
    for _ in range(150):
        params, opt = step(params, opt)
    return nnx.merge(graphdef, params), xs[:600], ys[:600]


def accuracy(model, x, y) -> float:
    return float(jnp.mean(jnp.argmax(model(x, train=False), -1) == y))


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.5)])
def test_pgd_stays_in_ball_and_image_range(trained, norm, eps):
    model, x, y = trained
    loss_fn = per_example_xent(model)
    adv = attacks.pgd(loss_fn, x, y, jax.random.key(0), SPACE, eps=eps, steps=5, step_size=eps / 2, norm=norm)
    p, p_adv = SPACE.to_pixels(x), adv * SPACE.std + SPACE.mean  # unclipped: the model's inputs themselves
    delta = (p_adv - p).reshape(len(x), -1)
    size = jnp.max(jnp.abs(delta), 1) if norm == "linf" else jnp.linalg.norm(delta, axis=1)
    assert float(jnp.max(size)) <= eps * (1 + 1e-5)
    assert float(jnp.min(p_adv)) >= -1e-6 and float(jnp.max(p_adv)) <= 1 + 1e-6
    lo, hi = SPACE.model_range  # the same range stated in model units
    assert float(jnp.min(adv)) >= lo - 1e-5 and float(jnp.max(adv)) <= hi + 1e-5
    # the attack uses its budget (not a no-op): most examples move by at least half of ε
    assert float(jnp.mean(size > eps / 2)) > 0.5
    assert float(jnp.mean(jnp.sum(loss_fn(adv, y)))) > float(jnp.sum(loss_fn(x, y)))


def test_fgsm_matches_closed_form_on_a_linear_model():
    """Softmax regression z = W·x + b: ∂L/∂x = Wᵀ(softmax(z) - onehot(y)), and ∂x/∂p = 1/std, so FGSM is
    clip(p + ε·sign(Wᵀ(s - onehot)), 0, 1) in pixels."""
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(10, 784)).astype(np.float32), rng.normal(size=10).astype(np.float32)
    p = rng.uniform(0, 1, size=(16, 784)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    x = SPACE.to_model(jnp.asarray(p))
    loss_fn = lambda x, y: optax.softmax_cross_entropy_with_integer_labels(x @ w.T + b, y)
    adv = attacks.fgsm(loss_fn, x, jnp.asarray(y), SPACE, eps=0.05)
    s = jax.nn.softmax(np.asarray(x) @ w.T + b)
    g = (np.asarray(s) - np.eye(10)[y]) @ w
    expected = np.clip(p + 0.05 * np.sign(g), 0, 1)
    np.testing.assert_allclose(np.asarray(adv) * SPACE.std + SPACE.mean, expected, atol=1e-5)


def test_accuracy_falls_with_eps_and_pgd_beats_fgsm(trained):
    model, x, y = trained
    loss_fn = per_example_xent(model)
    clean = accuracy(model, x, y)
    assert clean > 0.85
    pgd_acc, fgsm_acc = [], []
    for eps in (0.02, 0.05, 0.1, 0.2):
        adv = attacks.pgd(loss_fn, x, y, jax.random.key(1), SPACE, eps=eps, steps=10, step_size=2.5 * eps / 10)
        pgd_acc.append(accuracy(model, adv, y))
        fgsm_acc.append(accuracy(model, attacks.fgsm(loss_fn, x, y, SPACE, eps=eps), y))
    assert all(b <= a for a, b in zip([clean, *pgd_acc], pgd_acc, strict=False)), pgd_acc
    assert all(p <= f for p, f in zip(pgd_acc, fgsm_acc, strict=True)), (pgd_acc, fgsm_acc)
    assert pgd_acc[-1] < 0.2 < clean - 0.5  # a strong attack: ε = 0.2 breaks an undefended MLP


def run_config(data_dir, task: dict, evals: dict, steps: int) -> ml_collections.ConfigDict:
    c = config_lib.base()
    c.data.name, c.data.data_dir = "digits", data_dir
    c.data.batch_size, c.data.eval_batch_size = 64, 200
    c.model = ml_collections.ConfigDict({"name": "mlp", "hidden": (64,)})
    c.task = ml_collections.ConfigDict(task)
    c.evals = ml_collections.ConfigDict(evals)
    c.optim.name, c.optim.lr = "adam", 3e-3
    c.train.steps, c.train.log_every = steps, steps
    c.train.eval_every = c.train.checkpoint_every = 0
    c.train.progress = False
    return c


@pytest.mark.slow
def test_adversarial_training_raises_robust_accuracy(data_dir, tmp_path):
    """The trainer end to end: 120 steps of standard vs PGD training on digits; the robustness evaluator (PGD-10,
    ε = 0.1) must rank the adversarially trained model well above the standard one."""
    from jaxdl.train import train_and_evaluate

    evals = {"main": dict(kind="classify"), "rob": dict(kind="robustness", epsilons=(0.1,), steps=10, max_examples=300)}
    adv = dict(name="adversarial", input_space="digits", epsilon=0.1, steps=3)
    out = {}
    for name, task in (("standard", dict(name="classify")), ("adversarial", adv)):
        c = run_config(data_dir, task, evals, steps=120)
        out[name] = train_and_evaluate(c, str(tmp_path / name), devices=jax.devices()[:1])
    std, rob = out["standard"], out["adversarial"]
    assert std["eval/accuracy"] > 0.85 and rob["eval/accuracy"] > 0.7
    assert std["eval/rob/examples"] == 300 and std["eval/rob/monotone"] == 1.0
    assert rob["eval/rob/accuracy_eps0.1"] > std["eval/rob/accuracy_eps0.1"] + 0.2, (std, rob)
    with open(tmp_path / "adversarial" / "metrics.jsonl") as f:
        assert any("train/clean_accuracy" in r for r in map(json.loads, f))


@pytest.mark.parametrize(
    "task,evals,message",
    [
        ({}, {"rob": dict(kind="robustness", epsilons=(0.1, 1.5))}, r"config.evals.rob: epsilons\[1\]=1.5 is outside"),
        ({}, {"rob": dict(kind="robustness", epsilons=(-0.1,))}, r"epsilons\[0\]=-0.1 is outside the image range"),
        ({}, {"rob": dict(kind="robustness", norm="l2", epsilons=(30.0,))}, r"\[0, 28\] for norm='l2'"),
        (dict(name="adversarial", input_space="digits", epsilon=2.0), {}, r"config.task.epsilon=2.0 is outside"),
        (dict(name="adversarial"), {}, "config.task.input_space is required"),
        (dict(name="adversarial", input_space="mnist1d"), {}, r"config.task.input_space='mnist1d'"),
        (dict(name="adversarial", input_space="fashion_mnist"), {"rob": dict(kind="robustness")}, "does not match"),
    ],
)
def test_bad_budgets_fail_naming_the_key(data_dir, task, evals, message):
    """Refused when the task and the evaluators are made, before any data is read or model built."""
    from jaxdl import evaluators, tasks

    c = run_config(data_dir, {"name": "classify", **task}, evals, steps=1)
    with pytest.raises(ValueError, match=message):
        t = tasks.make(c.task)
        ctx = evaluators.Context(c, t, None, {"input_shape": (28, 28, 1)}, None, None, None, None, None)
        evaluators.make_all({k: v.to_dict() for k, v in c.evals.items()}, ctx)


@pytest.mark.parametrize(
    "arg", ["standard", "pgd", "dp,epsilon=3,steps=900,lr=0.1", "audit", "fedavg,noniid", "fedsgd", "dp,smoke"]
)
def test_trustworthy_study_configs_validate(arg):
    """Every arm of experiments/trustworthy/config.py builds and validates (the study's commands stay runnable)."""
    from jaxdl.ablate import _load_module

    config_lib.validate(_load_module("experiments/trustworthy/config.py").get_config(arg))
