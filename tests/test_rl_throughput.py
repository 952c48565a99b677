"""The `env_throughput` evaluator: its timed rollout takes exactly num_envs x steps environment steps (CartPole pays
a reward of 1 on every step, so the rollout's reward total counts them), the reported rates are that count over
the best of the timed calls (a fake clock makes the time known), both rates are positive; bad arguments (sizes
< 1, an unknown environment, a policy head that does not fit the environment, a task without one) fail naming
them."""

import jax
import numpy as np
import pytest
from flax import nnx

from jaxdl import config as config_lib
from jaxdl import models, tasks
from jaxdl.evaluators import env_throughput


def _ctx(num_classes: int = 2, task: dict | None = None):
    c = config_lib.base()
    c.task = task or dict(name="ppo", env="CartPole-v1", num_envs=2, num_steps=4, num_minibatches=2)
    with nnx.use_eager_sharding(False):
        model = models.make({"name": "actor_critic", "hidden": (8,)}, input_shape=(4,), num_classes=num_classes,
                            rngs=nnx.Rngs(0))  # fmt: skip
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    class Ctx:
        config, graphdef = c, None
        ds_info = {"num_classes": num_classes}

    Ctx.task, Ctx.graphdef = tasks.make(c.task), graphdef
    return Ctx, params, rest


def test_counts_envs_times_steps_and_reports_rates(monkeypatch):
    ctx, params, rest = _ctx()
    ev = env_throughput.Evaluator(ctx, num_envs=6, steps=7, repeats=2, every=0)
    for use_model in (True, False):  # every step of every environment pays 1 on CartPole
        assert float(ev._rollout(params, rest, jax.random.key(0), use_model)) == 6 * 7
    clock = iter(np.arange(0.0, 100.0, 0.5))  # each timed call takes 0.5 s on this clock
    monkeypatch.setattr(env_throughput.time, "perf_counter", lambda: float(next(clock)))
    out = ev.run(params, rest)
    assert out == {"env_steps_per_sec": 6 * 7 / 0.5, "env_only_steps_per_sec": 6 * 7 / 0.5}


def test_bad_arguments_fail():
    ctx, _, _ = _ctx()
    with pytest.raises(ValueError, match="num_envs=0"):
        env_throughput.Evaluator(ctx, num_envs=0, every=0)
    with pytest.raises(ValueError, match="steps=0"):
        env_throughput.Evaluator(ctx, steps=0, every=0)
    with pytest.raises(ValueError, match="'CartPole-v9' is not a gymnax environment"):
        env_throughput.Evaluator(ctx, env="CartPole-v9", every=0)
    wrong, _, _ = _ctx(num_classes=3)
    with pytest.raises(ValueError, match="3 actions but environment 'CartPole-v1' has 2"):
        env_throughput.Evaluator(wrong, every=0)
    board, _, _ = _ctx(task=dict(name="alphazero"))
    with pytest.raises(ValueError, match="task 'alphazero' names no environment"):
        env_throughput.Evaluator(board, every=0)
