"""Proximal policy optimization (Schulman et al. 2017) with the environments inside the jitted train step
(PureJaxRL's design: rollouts of `num_envs` vectorized gymnax environments in `lax.scan`).

    config.task = dict(name="ppo", env="CartPole-v1", num_envs=4, num_steps=128, update_epochs=4, num_minibatches=4)
    config.model = dict(name="actor_critic")           # (logits [B, A], value [B]); jaxdl.models.rl.actor_critic
    config.optim: adam lr 2.5e-4 eps 1e-5, clip_norm 0.5, schedule "linear" (CleanRL's annealing)

One train step is ONE minibatch update, so the trainer's optimizer, schedule, grad accumulation, NaN guard,
checkpoints and metrics apply unchanged. The carry (checkpointed with the run) holds the environments and the
current rollout: on update 0 of every `update_epochs * num_minibatches` the step collects a new rollout of
`num_steps` steps of every environment with the current policy, computes GAE advantages/returns with its value
function and draws one permutation per epoch; every step then trains on its minibatch of that rollout. So
`train.steps = total_env_steps / (num_envs * num_steps) * update_epochs * num_minibatches` (the difference from
CleanRL: its learning rate anneals once per rollout, this one once per step).

`normalize_obs=True`: the policy sees observations normalized by running statistics (`jaxdl.rl.normalize`:
Welford mean/var of every observation so far, clipped to +-10), carried in carry["env"]["obs_norm"] and
checkpointed with it; the rollout stores the normalized observations; `episode_return` evaluates with the
statistics frozen at the run's current values.

Environments are sharded over the mesh's data axes (their observations are constrained to logical `batch`); a
fixed seed gives the same run on 1 and 8 devices. Train metrics: the PPO loss terms (`jaxdl.rl.ppo`),
`episode_return` / `episode_length` (mean over the episodes that ended in the latest rollout, the previous value
if none did) and `env_steps` (environment steps taken so far).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.parallel.rules import constrain
from jaxdl.rl.envs import VecEnv
from jaxdl.rl.gae import gae
from jaxdl.rl.normalize import NormalizeObservation
from jaxdl.rl.ppo import ppo_loss
from jaxdl.tasks.base import Task as BaseTask

ROLLOUT_KEYS = ("obs", "action", "log_prob", "value", "advantage", "return")


def check_actor_critic(model_config, task_name: str) -> None:
    """Fails naming config.model.name unless the model returns (policy logits, value)."""
    from jaxdl import models

    if not model_config.get("name"):
        raise ValueError("config.model.name is required (it is empty)")
    cls = models.get_class(model_config["name"])
    if not getattr(cls, "ACTOR_CRITIC", False):
        raise ValueError(
            f"config.model.name={model_config['name']!r} is not an actor-critic model (task {task_name!r} needs "
            "(policy logits, value) outputs, e.g. 'actor_critic')"
        )
    models.check_kwargs(model_config["name"], {k: v for k, v in model_config.items() if k != "name"})


def policy_step(model, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(action int32 [n], log pi(action) float32 [n], value float32 [n]) sampled from the model's policy."""
    logits, value = model(obs)
    action = jax.random.categorical(key, logits).astype(jnp.int32)
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0]
    return action, log_prob, value


class Task(BaseTask):
    produces_batches = True
    batch_keys = ROLLOUT_KEYS
    not_model_inputs = ROLLOUT_KEYS

    def __init__(
        self,
        *,
        env: str = "CartPole-v1",
        num_envs: int = 4,
        num_steps: int = 128,
        update_epochs: int = 4,
        num_minibatches: int = 4,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_eps: float = 0.2,
        clip_value: bool = True,
        vf_coef: float = 0.5,
        ent_coef: float = 0.01,
        normalize_advantages: bool = True,
        normalize_obs: bool = False,
    ):
        super().__init__()
        for key, value in dict(num_envs=num_envs, num_steps=num_steps, update_epochs=update_epochs,
                               num_minibatches=num_minibatches).items():  # fmt: skip
            if value < 1:
                raise ValueError(f"config.task.{key}={value} must be >= 1")
        if (num_envs * num_steps) % num_minibatches:
            raise ValueError(
                f"config.task.num_minibatches={num_minibatches} must divide num_envs * num_steps = "
                f"{num_envs * num_steps}"
            )
        if not (0 <= gamma <= 1 and 0 <= gae_lambda <= 1 and clip_eps > 0):
            raise ValueError(f"config.task: gamma={gamma}, gae_lambda={gae_lambda} in [0, 1], clip_eps={clip_eps} > 0")
        self.vec = VecEnv(env, num_envs)  # an unknown name fails here, naming it
        self.vec.require_discrete(what="task 'ppo''s policy head")
        self.normalize_obs = normalize_obs
        if normalize_obs:  # running mean/var in carry["env"]["obs_norm"]; episode_return evaluates with it frozen
            self.vec = NormalizeObservation(self.vec)
        self.env_name, self.num_envs, self.num_steps = env, num_envs, num_steps
        self.update_epochs, self.num_minibatches = update_epochs, num_minibatches
        self.gamma, self.gae_lambda, self.clip_eps, self.clip_value = gamma, gae_lambda, clip_eps, clip_value
        self.vf_coef, self.ent_coef, self.normalize_advantages = vf_coef, ent_coef, normalize_advantages

    @property
    def rollout_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.rollout_size // self.num_minibatches

    @property
    def updates_per_rollout(self) -> int:
        return self.update_epochs * self.num_minibatches

    def steps_for(self, env_steps: int) -> int:
        """train.steps that consume `env_steps` environment steps (rounded up to whole rollouts)."""
        return -(-env_steps // self.rollout_size) * self.updates_per_rollout

    # ------------------------------------------------------------------------------------------ model
    def check_model_config(self, model_config) -> None:
        check_actor_critic(model_config, "ppo")

    def data_info(self, config) -> dict:
        return {"input_shape": self.vec.obs_shape, "num_classes": self.vec.num_actions}

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="episode_return", episodes=100)}

    # ------------------------------------------------------------------------------------------ carry
    def init_carry(self, key: jax.Array, model: nnx.Module) -> dict:
        b, obs_shape = self.rollout_size, self.vec.obs_shape
        zeros = lambda shape, dtype=jnp.float32: jnp.zeros(shape, dtype)
        buffer = {k: zeros((b,)) for k in ("log_prob", "value", "advantage", "return")}
        buffer |= {"obs": zeros((b, *obs_shape)), "action": zeros((b,), jnp.int32)}
        return {
            "env": self.vec.reset(key),
            "buffer": buffer,
            "perm": jnp.zeros((self.update_epochs, b), jnp.int32),
            "update": jnp.zeros((), jnp.int32),
            "env_steps": jnp.zeros((), jnp.int32),
            "episode_return": jnp.zeros((), jnp.float32),
            "episode_length": jnp.zeros((), jnp.float32),
        }

    def _shard(self, x: jax.Array) -> jax.Array:
        return constrain(x, ("batch",) + (None,) * (x.ndim - 1))

    def _shard_env(self, env_carry: dict) -> dict:
        """Every per-environment array constrained to the data axes (the normalization statistics replicated)."""
        if not self.normalize_obs:
            return jax.tree.map(self._shard, env_carry)
        inner = jax.tree.map(self._shard, env_carry["inner"])
        return dict(env_carry, inner=inner, obs=self._shard(env_carry["obs"]))

    def collect(self, model: nnx.Module, carry: dict, key: jax.Array) -> dict:
        """`carry` with a new rollout (GAE computed, permutations drawn) and the environments advanced."""
        k_roll, k_perm = jax.random.split(key)

        def body(env_carry, k):
            k_act, k_env = jax.random.split(k)
            obs = self._shard(env_carry["obs"])
            action, log_prob, value = policy_step(model, obs, k_act)
            env_carry, tr = self.vec.step(env_carry, action, k_env)
            env_carry = self._shard_env(env_carry)
            out = dict(obs=obs, action=action, log_prob=log_prob, value=value, reward=tr["reward"], done=tr["done"])
            return env_carry, out | {"ep_return": tr["episode_return"], "ep_length": tr["episode_length"]}

        env_carry, traj = jax.lax.scan(body, carry["env"], jax.random.split(k_roll, self.num_steps))
        _, last_value = model(env_carry["obs"])
        adv, ret = gae(traj["reward"], traj["value"], traj["done"], last_value, self.gamma, self.gae_lambda)
        flat = lambda x: x.reshape(self.rollout_size, *x.shape[2:])  # [T, N, ...] -> [T * N, ...]
        buffer = {k: flat(traj[k]) for k in ("obs", "action", "log_prob", "value")}
        buffer |= {"advantage": flat(adv), "return": flat(ret)}
        perm = jax.vmap(lambda k: jax.random.permutation(k, self.rollout_size))(
            jax.random.split(k_perm, self.update_epochs)
        ).astype(jnp.int32)
        ended = jnp.sum(traj["done"])
        mean = lambda x, prev: jnp.where(ended > 0, jnp.sum(x) / jnp.maximum(ended, 1), prev).astype(jnp.float32)
        return {
            "env": env_carry,
            "buffer": buffer,
            "perm": perm,
            "update": carry["update"],
            "env_steps": carry["env_steps"] + self.rollout_size,
            "episode_return": mean(traj["ep_return"], carry["episode_return"]),
            "episode_length": mean(traj["ep_length"].astype(jnp.float32), carry["episode_length"]),
        }

    def make_batch(self, model: nnx.Module, carry: dict, key: jax.Array) -> tuple[dict, dict]:
        """The minibatch of this step: rollout keys [minibatch_size] (+ the latest episode statistics, repeated
        per row so grad accumulation can split them); a new rollout first when the previous one is used up."""
        graphdef, state = nnx.split(model)
        carry = jax.lax.cond(
            carry["update"] == 0,
            lambda c, s: self.collect(nnx.merge(graphdef, s), c, key),
            lambda c, s: c,
            carry,
            state,
        )
        epoch, mb = carry["update"] // self.num_minibatches, carry["update"] % self.num_minibatches
        idx = jax.lax.dynamic_slice(carry["perm"][epoch], (mb * self.minibatch_size,), (self.minibatch_size,))
        batch = {k: self._shard(v[idx]) for k, v in carry["buffer"].items()}
        rows = lambda x: jnp.full((self.minibatch_size,), x, jnp.float32)
        batch |= {k: rows(carry[k]) for k in ("episode_return", "episode_length", "env_steps")}
        carry = dict(carry, update=(carry["update"] + 1) % self.updates_per_rollout)
        return batch, carry

    # ------------------------------------------------------------------------------------------ loss
    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        logits, value = model(batch["obs"], train=True)
        loss, metrics = ppo_loss(
            logits,
            value,
            batch,
            clip_eps=self.clip_eps,
            vf_coef=self.vf_coef,
            ent_coef=self.ent_coef,
            clip_value=self.clip_value,
            normalize_advantages=self.normalize_advantages,
        )
        stats = {k: jnp.mean(batch[k]) for k in ("episode_return", "episode_length", "env_steps")}
        return loss, metrics | stats
