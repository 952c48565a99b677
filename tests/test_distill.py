"""The `distill` task: the Hinton et al. loss against a float64 numpy hand computation (and its T(p_s - p_t)
gradient), and a short real run of an MLP student distilled from a trained CNN teacher whose weights stay frozen."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from deploy_helpers import trained_run

from jaxdl import config as config_lib
from jaxdl.state import restore_run
from jaxdl.tasks.distill import distill_loss
from jaxdl.train import train_and_evaluate


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("temperature,alpha", [(1.0, 0.5), (4.0, 0.9), (2.5, 0.0), (3.0, 1.0)])
def test_distill_loss_matches_hand_formula(temperature, alpha):
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(6, 5)) * 3, rng.normal(size=(6, 5)) * 3
    y = rng.integers(0, 5, 6)
    pt, ps = np_softmax(t / temperature), np_softmax(s / temperature)
    kl = np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), -1))
    ce = np.mean(-np.log(np_softmax(s)[np.arange(6), y]))
    want = alpha * temperature**2 * kl + (1 - alpha) * ce
    got, metrics = distill_loss(jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32), y, temperature, alpha)
    assert float(got) == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert float(metrics["hard"]) == pytest.approx(ce, rel=1e-5)
    # d(T^2 KL)/ds = T (p_s^T - p_t^T) / batch: the soft term's gradient does not shrink with T
    g = jax.grad(lambda s_: distill_loss(s_, jnp.asarray(t, jnp.float32), y, temperature, 1.0)[0])(
        jnp.asarray(s, jnp.float32)
    )
    np.testing.assert_allclose(g, temperature * (ps - pt) / 6, rtol=1e-4, atol=1e-6)
    # no gradient flows to the teacher
    gt = jax.grad(lambda t_: distill_loss(jnp.asarray(s, jnp.float32), t_, y, temperature, alpha)[0])(
        jnp.asarray(t, jnp.float32)
    )
    assert np.all(np.asarray(gt) == 0)


def test_student_trains_against_a_frozen_teacher(data_dir, tmp_path):
    teacher_dir = trained_run(data_dir)
    c = config_lib.base()
    c.data.name, c.data.data_dir = "mnist1d", data_dir
    c.data.batch_size, c.data.eval_batch_size = 64, 500
    c.model = ml_collections.ConfigDict({"name": "mlp", "hidden": (32,)})
    c.task = ml_collections.ConfigDict(dict(name="distill", teacher=teacher_dir, temperature=4.0, alpha=0.9))
    c.optim.name, c.optim.lr = "adam", 3e-3
    c.train.steps, c.train.log_every = 20, 10
    c.train.eval_every = c.train.checkpoint_every = 0
    c.train.progress = False
    final = train_and_evaluate(c, str(tmp_path), devices=jax.devices()[:1])
    assert 0.0 <= final["eval/accuracy"] <= 1.0 and np.isfinite(final["eval/loss"])
    student = restore_run(str(tmp_path), devices=[jax.devices()[0]])
    teacher = restore_run(teacher_dir, devices=[jax.devices()[0]])
    got, want = jax.tree.leaves(student.state["params"]["teacher"]), jax.tree.leaves(teacher.state["params"])
    assert len(got) == len(want) > 0
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)  # frozen: bitwise the teacher's checkpoint after 20 steps
    assert set(student.state["opt_state"]) == {"student"}  # only the student has an optimizer
    with pytest.raises(FileNotFoundError, match="config.json does not exist"):
        c.task.teacher = str(tmp_path / "missing")
        config_lib.validate(c)
