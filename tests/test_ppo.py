"""PPO as a trainer task (`jaxdl.tasks.ppo`): an interrupted run resumed from its mid-rollout checkpoint is bitwise
the uninterrupted run (parameters, optimizer state, environments, rollout buffer, RNG); the same seed on 8
devices (environments sharded over the data axis) follows the 1-device run; a short CartPole run beats the random
policy's return, measured in the test, by a clear margin."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl import config as config_lib
from jaxdl import state as state_lib
from jaxdl.metrics import read_metrics
from jaxdl.rl.envs import VecEnv, run_episodes
from jaxdl.train import train_and_evaluate


def ppo_config(steps: int, **task):
    c = config_lib.base()
    c.task = dict(name="ppo", env="CartPole-v1", num_envs=8, num_steps=16, update_epochs=2, num_minibatches=2) | task
    c.model = dict(name="actor_critic", hidden=(32, 32))
    c.optim.name, c.optim.lr, c.optim.eps, c.optim.clip_norm = "adam", 1e-3, 1e-5, 0.5
    c.train.steps, c.train.log_every, c.train.progress = steps, 5, False
    c.train.eval_every, c.train.checkpoint_every = 0, 3
    c.evals.main = dict(kind="episode_return", episodes=16)
    return c


def restored(workdir):
    return jax.tree.map(np.asarray, state_lib.restore_run(str(workdir), None, jax.devices()[:1]).state)


def test_resume_mid_rollout_is_bitwise(tmp_path):
    one = jax.devices()[:1]
    full = train_and_evaluate(ppo_config(10), str(tmp_path / "full"), devices=one)
    train_and_evaluate(ppo_config(5), str(tmp_path / "split"), devices=one)  # stops mid-rollout (update 1 of 4)
    resumed = train_and_evaluate(ppo_config(10), str(tmp_path / "split"), devices=one)
    timeless = lambda r: {k: v for k, v in r.items() if k not in ("eval/elapsed_s", "eval/cpu_s")}  # clocks
    assert timeless(full) == timeless(resumed)
    a, b = restored(tmp_path / "full"), restored(tmp_path / "split")
    jax.tree.map(np.testing.assert_array_equal, a, b)  # params, opt state, env states, rollout buffer, rng
    assert int(a["carry"]["env_steps"]) == 3 * 8 * 16 and int(a["carry"]["update"]) == 10 % 4
    logged = [r for r in read_metrics(str(tmp_path / "full")) if "train/loss" in r]
    again = [r for r in read_metrics(str(tmp_path / "split")) if "train/loss" in r]
    assert [r["train/loss"] for r in logged] == [r["train/loss"] for r in again[-len(logged) :]]


def unit_run(devices, steps: int):
    """The trainer's state and jitted step on a data-parallel mesh over `devices`, run `steps` steps."""
    from jaxdl import tasks
    from jaxdl.parallel import rules as rules_lib
    from jaxdl.parallel.mesh import make_mesh

    config = config_lib.validate(ppo_config(steps))
    task = tasks.make(config.task)
    mesh = make_mesh(config.mesh, devices, config.mesh_dcn)
    rules = rules_lib.resolve(config.sharding.strategy, config.sharding.rules)
    tx, schedule = state_lib.make_optimizers(config, task)
    info = task.data_info(config)
    graphdef, state, sharding = state_lib.init_sharded_state(config, info, tx, mesh, rules, task)
    step = state_lib.compile_train_step(config, graphdef, tx, schedule, mesh, rules, sharding, task)
    losses = []
    for _ in range(steps):
        state, metrics = step(state, {})
        losses.append(float(metrics["loss"]))
    return jax.tree.map(np.asarray, state), losses


def test_8_devices_follow_1_device():
    a, loss_a = unit_run(jax.devices()[:1], 6)
    b, loss_b = unit_run(jax.devices()[:8], 6)  # 8 environments, one per device; minibatches of 64 split 8 ways
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
    close = lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    jax.tree.map(close, nnx.to_pure_dict(a["params"]), nnx.to_pure_dict(b["params"]))
    jax.tree.map(close, a["carry"], b["carry"])  # same actions sampled, same environment trajectories


def test_short_run_beats_the_random_policy(tmp_path):
    vec = VecEnv("CartPole-v1", 100)
    rand = lambda obs, k: jax.random.randint(k, (obs.shape[0],), 0, 2).astype(jnp.int32)
    random_return = float(jax.jit(lambda k: run_episodes(vec, rand, k))(jax.random.key(0))[0].mean())
    c = ppo_config(0, num_envs=16, num_steps=32, update_epochs=4, num_minibatches=4)
    c.model.hidden = (64, 64)
    c.train.steps = c.train.log_every = 16 * 24  # 24 rollouts: 12,288 environment steps
    c.train.checkpoint_every = 0
    c.evals.main = dict(kind="episode_return", episodes=100)
    out = train_and_evaluate(c, str(tmp_path / "learn"), devices=jax.devices()[:1])
    assert out["eval/return"] > 3 * random_return, (out, random_return)  # random: ~22
    assert out["eval/return"] - out["eval/return_ci95"] > 2 * random_return
