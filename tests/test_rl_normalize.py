"""Observation normalization (`jaxdl.rl.normalize`): the running statistics equal numpy's mean and population
variance over the same stream of observations (batch after batch, including an offset far from 0 that a naive
sum-of-squares would lose in float32); the wrapper's carried statistics over real gymnax steps (reset included)
equal numpy's over the raw observations it saw, and the policy's observations are numpy's normalization of them;
frozen statistics do not move; the PPO task counts every collected observation."""

import jax
import numpy as np
import pytest
from flax import nnx

from jaxdl import models, tasks
from jaxdl.rl import normalize
from jaxdl.rl.envs import VecEnv


def test_running_stats_equal_numpy_over_the_stream():
    rng = np.random.default_rng(0)
    stats, seen = normalize.init_stats((3,)), []
    update = jax.jit(normalize.update)
    for _ in range(25):
        batch = rng.normal([1000.0, -2.0, 0.0], [0.5, 3.0, 1e-3], size=(int(rng.integers(1, 9)), 3))
        seen.append(batch)
        stats = update(stats, batch.astype(np.float32))
    ref = np.concatenate(seen).astype(np.float32).astype(np.float64)
    assert float(stats["count"]) == len(ref)
    np.testing.assert_allclose(stats["mean"], ref.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(normalize.variance(stats), ref.var(0), rtol=2e-3)


def test_wrapper_over_gymnax_steps_and_frozen_stats():
    vec = normalize.NormalizeObservation(VecEnv("Acrobot-v1", 4))
    carry = vec.reset(jax.random.key(0))
    step = jax.jit(vec.step)
    raw = [np.asarray(carry["inner"]["obs"])]
    for t in range(30):
        carry, _ = step(carry, np.full(4, t % 3, np.int32), jax.random.key(t))
        raw.append(np.asarray(carry["inner"]["obs"]))
    ref = np.concatenate(raw).astype(np.float64)
    stats = carry["obs_norm"]
    np.testing.assert_allclose(stats["mean"], ref.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(normalize.variance(stats), ref.var(0), rtol=1e-4, atol=1e-7)
    want = np.clip((raw[-1] - ref.mean(0)) / np.sqrt(ref.var(0) + 1e-8), -10, 10)
    np.testing.assert_allclose(carry["obs"], want, rtol=1e-4, atol=1e-4)
    frozen = normalize.NormalizeObservation(VecEnv("Acrobot-v1", 4), stats=stats)
    c = frozen.reset(jax.random.key(1))
    c, _ = jax.jit(frozen.step)(c, np.zeros(4, np.int32), jax.random.key(2))
    for k in stats:
        np.testing.assert_array_equal(c["obs_norm"][k], stats[k])
    with pytest.raises(ValueError, match="clip=0"):
        normalize.NormalizeObservation(vec.vec, clip=0)


def test_ppo_task_counts_every_collected_observation():
    task = tasks.make(
        dict(name="ppo", env="Acrobot-v1", num_envs=4, num_steps=8, num_minibatches=2, normalize_obs=True)
    )
    with nnx.use_eager_sharding(False):
        model = models.make({"name": "actor_critic", "hidden": (8,)}, input_shape=task.vec.obs_shape,
                            num_classes=3, rngs=nnx.Rngs(0))  # fmt: skip
    carry = task.init_carry(jax.random.key(0), model)
    batch, carry = jax.jit(lambda c, k: task.make_batch(model, c, k))(carry, jax.random.key(1))
    assert float(carry["env"]["obs_norm"]["count"]) == 4 * (8 + 1)  # the reset's observations + 8 steps
    obs = np.asarray(carry["buffer"]["obs"])
    assert np.abs(obs).max() <= 10.0 and abs(obs.mean()) < 1.0  # the stored observations are the normalized ones
