"""RL building blocks against independent references: GAE against a hand-computed trajectory and the direct sum
A_t = sum_l (gamma lam)^l delta_{t+l}; the PPO objective against a per-element numpy formula; the vectorized
environments' episode statistics against gymnax stepped one environment at a time; and the errors for an unknown
environment, a non-discrete action space or a model without a value head, raised before anything compiles."""

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import config as config_lib
from jaxdl.rl.envs import VecEnv, run_episodes
from jaxdl.rl.gae import gae
from jaxdl.rl.ppo import ppo_loss


def test_gae_matches_a_hand_computed_trajectory():
    # gamma = lam = 0.5; the episode ends on step 1, so step 2 starts a new one and step 1 does not bootstrap
    reward = jnp.array([[1.0], [2.0], [3.0]])
    value = jnp.array([[0.5], [1.0], [1.5]])
    done = jnp.array([[False], [True], [False]])
    adv, ret = gae(reward, value, done, jnp.array([2.0]), 0.5, 0.5)
    # t=2: 3 + .5*2 - 1.5 = 2.5;  t=1: 2 - 1 = 1 (no bootstrap, no carry);  t=0: (1 + .5*1 - .5) + .25*1 = 1.25
    np.testing.assert_allclose(np.asarray(adv)[:, 0], [1.25, 1.0, 2.5], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ret)[:, 0], [1.75, 2.0, 4.0], rtol=1e-6)


def test_gae_equals_the_discounted_sum_of_td_errors():
    rng = np.random.default_rng(0)
    t, n, gamma, lam = 7, 3, 0.9, 0.8
    r, v, last = rng.normal(size=(t, n)), rng.normal(size=(t, n)), rng.normal(size=n)
    d = rng.random((t, n)) < 0.25
    adv, _ = gae(*(jnp.asarray(x, jnp.float32) for x in (r, v)), jnp.asarray(d), jnp.asarray(last, jnp.float32),
                 gamma, lam)  # fmt: skip
    nxt = np.concatenate([v[1:], last[None]])
    delta = r + gamma * nxt * (1 - d) - v
    want = np.zeros((t, n))
    for j in range(n):
        for i in range(t):
            w = 1.0
            for k in range(i, t):
                want[i, j] += w * delta[k, j]
                if d[k, j]:
                    break
                w *= gamma * lam
    np.testing.assert_allclose(np.asarray(adv), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("clip_value", [True, False])
def test_ppo_loss_matches_a_direct_numpy_formula(clip_value):
    rng = np.random.default_rng(1)
    b, a, eps, vf, ent = 16, 3, 0.2, 0.5, 0.01
    logits = rng.normal(size=(b, a)).astype(np.float32)
    value = rng.normal(size=b).astype(np.float32)
    batch = {
        "action": rng.integers(0, a, b).astype(np.int32),
        "log_prob": np.log(rng.uniform(0.1, 0.9, b)).astype(np.float32),  # ratios well outside [0.8, 1.2] too
        "value": (value + rng.normal(scale=0.5, size=b)).astype(np.float32),
        "advantage": rng.normal(size=b).astype(np.float32),
        "return": rng.normal(size=b).astype(np.float32),
    }
    loss, m = ppo_loss(jnp.asarray(logits), jnp.asarray(value), {k: jnp.asarray(x) for k, x in batch.items()},
                       clip_eps=eps, vf_coef=vf, ent_coef=ent, clip_value=clip_value)  # fmt: skip
    adv = (batch["advantage"] - batch["advantage"].mean()) / (batch["advantage"].std() + 1e-8)
    pg, vl, h = 0.0, 0.0, 0.0
    for i in range(b):
        p = np.exp(logits[i] - logits[i].max())
        p /= p.sum()
        ratio = p[batch["action"][i]] / np.exp(batch["log_prob"][i])
        pg += -min(ratio * adv[i], min(max(ratio, 1 - eps), 1 + eps) * adv[i]) / b
        unclipped = (value[i] - batch["return"][i]) ** 2
        vc = batch["value"][i] + min(max(value[i] - batch["value"][i], -eps), eps)
        vl += 0.5 * (max(unclipped, (vc - batch["return"][i]) ** 2) if clip_value else unclipped) / b
        h += -np.sum(p * np.log(p)) / b
    np.testing.assert_allclose(float(m["policy_loss"]), pg, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(m["value_loss"]), vl, rtol=1e-5)
    np.testing.assert_allclose(float(m["entropy"]), h, rtol=1e-5)
    np.testing.assert_allclose(float(loss), pg + vf * vl - ent * h, rtol=1e-5, atol=1e-6)


def test_vec_env_matches_gymnax_one_env_at_a_time_with_episode_statistics():
    t_max, vec = 60, VecEnv("CartPole-v1", 3)
    env, params = gymnax.make("CartPole-v1")
    key = jax.random.key(0)
    actions = jnp.stack([jnp.arange(t_max) % 2, jnp.ones(t_max), jnp.zeros(t_max)], 1).astype(jnp.int32)
    keys = jax.vmap(lambda t: jax.random.fold_in(key, t))(jnp.arange(t_max))

    def vec_run():
        def body(c, xs):
            c, tr = vec.step(c, *xs)
            return c, (c["obs"], tr)

        return jax.lax.scan(body, vec.reset(key), (actions, keys))[1]

    def one_env(i):  # gymnax alone, environment i, with the keys VecEnv hands it
        def body(s, xs):
            a, k = xs
            obs, s, r, d, _ = env.step(jax.random.split(k, 3)[i], s, a[i], params)
            return s, (obs, r, d)

        s0 = env.reset(jax.random.split(key, 3)[i], params)[1]
        return jax.lax.scan(body, s0, (actions, keys))[1]

    obs, tr = jax.device_get(jax.jit(vec_run)())
    ended = 0
    for i in range(3):
        ref_obs, r, d = jax.device_get(jax.jit(one_env, static_argnums=0)(i))
        np.testing.assert_allclose(obs[:, i], ref_obs, rtol=1e-3, atol=1e-4)  # XLA fuses differently
        np.testing.assert_array_equal(tr["done"][:, i], d)
        ret = 0.0
        for t in range(t_max):  # the episode statistics, recounted from gymnax's rewards and dones
            ret += r[t]
            want = ret if d[t] else 0.0
            assert float(tr["episode_return"][t, i]) == want and int(tr["episode_length"][t, i]) == want
            ended, ret = ended + int(d[t]), 0.0 if d[t] else ret
    assert ended >= 6  # envs 1 and 2 push one way and fall every ~10 steps


def test_run_episodes_of_a_random_policy_gives_the_known_cartpole_return():
    vec = VecEnv("CartPole-v1", 100)
    policy = lambda obs, k: jax.random.randint(k, (obs.shape[0],), 0, 2)
    ret, length = jax.jit(lambda k: run_episodes(vec, policy, k))(jax.random.key(3))
    assert 18 < float(ret.mean()) < 27  # a random CartPole policy lasts ~22 steps on average
    np.testing.assert_array_equal(np.asarray(ret), np.asarray(length))  # reward 1 per step


def _ppo_config(**task):
    c = config_lib.base()
    c.task = dict(name="ppo", **task)
    c.model = dict(name="actor_critic")
    return c


def test_bad_environment_and_model_fail_before_compiling():
    with pytest.raises(ValueError, match="'CartPol-v1' is not a gymnax environment; available: CartPole-v1"):
        config_lib.validate(_ppo_config(env="CartPol-v1"))
    with pytest.raises(ValueError, match="'Pendulum-v1' has a Box action space; .* categorical"):
        config_lib.validate(_ppo_config(env="Pendulum-v1"))
    c = _ppo_config()
    c.model = dict(name="mlp")
    with pytest.raises(ValueError, match="config.model.name='mlp' is not an actor-critic model"):
        config_lib.validate(c)
    with pytest.raises(ValueError, match="num_minibatches=3 must divide num_envs \\* num_steps = 512"):
        config_lib.validate(_ppo_config(num_minibatches=3))
