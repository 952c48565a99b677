"""Pipeline parallelism (jaxdl.parallel.pipeline) against a sequential lax.scan over the same layers."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdl.parallel.mesh import make_mesh
from jaxdl.parallel.pipeline import pipeline

L, B, S, D = 8, 16, 2, 8


def stage_fn(params, h):
    """A residual tanh MLP over however many layers `params` stacks: h = h + tanh(h @ W_l + b_l)."""

    def layer(h, wb):
        w, b = wb
        return h + jnp.tanh(h @ w + b), None

    return jax.lax.scan(layer, h, (params["w"], params["b"]))[0]


def make_inputs(seed=0):
    kw, kb, kx = jax.random.split(jax.random.key(seed), 3)
    params = {"w": jax.random.normal(kw, (L, D, D)) / np.sqrt(D), "b": 0.1 * jax.random.normal(kb, (L, D))}
    return params, jax.random.normal(kx, (B, S, D))


def loss_fn(apply):
    """Loss with a fixed non-uniform cotangent, returning the outputs as aux."""
    target = jnp.sin(jnp.arange(B * S * D, dtype=jnp.float32)).reshape(B, S, D)

    def loss(params, x):
        y = apply(params, x)
        return jnp.mean((y - target) ** 2), y

    return loss


def rel_err(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def assert_trees_close(a, b, tol=1e-5):
    errs = jax.tree.map(rel_err, a, b)
    assert max(jax.tree.leaves(errs)) <= tol, errs


CASES = {
    "gpipe_p4_m4": (dict(pipeline=4, data=-1), dict(num_microbatches=4)),
    "gpipe_p4_m8": (dict(pipeline=4, data=-1), dict(num_microbatches=8)),
    "circular_p4_r2_m4": (dict(pipeline=4, data=-1), dict(num_microbatches=4, schedule="circular", repeats=2)),
    "circular_p4_r2_m8": (dict(pipeline=4, data=-1), dict(num_microbatches=8, schedule="circular", repeats=2)),
    "gpipe_p2_data4": (dict(pipeline=2, data=4), dict(num_microbatches=4)),
    "gpipe_remat": (dict(pipeline=4, data=-1), dict(num_microbatches=4, remat=True)),
    "circular_remat": (dict(pipeline=2, data=4), dict(num_microbatches=2, schedule="circular", repeats=4, remat=True)),
    "no_pipeline": (dict(pipeline=1, data=-1), dict(num_microbatches=4)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_outputs_and_grads_match_sequential(case):
    axes, kwargs = CASES[case]
    mesh = make_mesh(axes)
    params, x = make_inputs()
    piped = loss_fn(lambda p, x: pipeline(stage_fn, p, x, mesh=mesh, **kwargs))
    (loss, y), grads = jax.jit(jax.value_and_grad(piped, argnums=(0, 1), has_aux=True))(params, x)
    (ref_loss, ref_y), ref_grads = jax.value_and_grad(loss_fn(stage_fn), argnums=(0, 1), has_aux=True)(params, x)
    assert y.shape == x.shape
    assert rel_err(y, ref_y) <= 1e-5
    assert rel_err(loss, ref_loss) <= 1e-5
    assert_trees_close(grads, ref_grads)


@pytest.mark.parametrize("schedule,repeats", [("gpipe", 1), ("circular", 2)])
def test_sgd_with_pipeline_sharded_params_tracks_sequential(schedule, repeats):
    mesh = make_mesh(dict(pipeline=4, data=-1))
    params, x = make_inputs(seed=1)
    params = jax.device_put(params, NamedSharding(mesh, P("pipeline")))
    x = jax.device_put(x, NamedSharding(mesh, P("data")))
    piped = loss_fn(
        lambda p, x: pipeline(stage_fn, p, x, mesh=mesh, num_microbatches=4, schedule=schedule, repeats=repeats)
    )

    def sgd(loss):
        @jax.jit
        def step(params):
            (value, _), grads = jax.value_and_grad(loss, has_aux=True)(params, x)
            return jax.tree.map(lambda p, g: p - 0.5 * g, params, grads), value, grads

        return step

    step, ref_step = sgd(piped), sgd(loss_fn(stage_fn))
    p, ref_p, losses, ref_losses = params, params, [], []
    for _ in range(4):
        p, value, grads = step(p)
        ref_p, ref_value, _ = ref_step(ref_p)
        losses.append(float(value))
        ref_losses.append(float(ref_value))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    assert losses[-1] < losses[0]
    assert_trees_close(p, ref_p)
    if schedule == "gpipe":  # each stage's layers stay on their devices: grads come back sharded like the params
        for g in jax.tree.leaves(grads):
            assert g.sharding.is_equivalent_to(NamedSharding(mesh, P("pipeline")), g.ndim), g.sharding


def test_ring_shift_has_no_cyclic_collective_permute():
    """Every collective-permute in the compiled pipeline is acyclic (the XLA GPU failure mode, MaxText #2739)."""

    mesh = make_mesh(dict(pipeline=4, data=-1))
    params, x = make_inputs()
    fn = jax.jit(jax.grad(lambda p: jnp.sum(pipeline(stage_fn, p, x, mesh=mesh, num_microbatches=4) ** 2)))
    hlo = fn.lower(params).compile().as_text()
    pair_lists = re.findall(r"source_target_pairs=\{(\{[\d,{}]*\})\}", hlo)
    assert len(pair_lists) >= 2  # forward chain and wrap edge (and their transposes)
    for pairs in pair_lists:
        edges = dict(tuple(map(int, e.split(","))) for e in re.findall(r"\{(\d+,\d+)\}", pairs))
        for start in edges:
            node, hops = edges[start], 1
            while node in edges and node != start and hops <= len(edges):
                node, hops = edges[node], hops + 1
            assert node != start, f"collective-permute {pairs} has a cycle through device {start}"


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(schedule="1f1b"), "schedule"),
        (dict(repeats=3), "repeats"),  # gpipe with repeats > 1
        (dict(schedule="circular", repeats=3), "repeats"),  # 8 layers not divisible by 4 * 3
        (dict(num_microbatches=3), "num_microbatches"),  # batch 16 not divisible by 3
        (dict(schedule="circular", repeats=2, num_microbatches=2), "num_microbatches"),  # circular needs M >= P
        (dict(axis="stages"), "axis"),
    ],
)
def test_errors_name_the_argument(kwargs, name):
    mesh = make_mesh(dict(pipeline=4, data=-1))
    params, x = make_inputs()
    kwargs = dict(num_microbatches=4) | kwargs
    with pytest.raises(ValueError, match=name):
        pipeline(stage_fn, params, x, mesh=mesh, **kwargs)


def test_layers_not_divisible_by_stages():
    mesh = make_mesh(dict(pipeline=4, data=-1))
    params, x = make_inputs()
    params = jax.tree.map(lambda w: w[:6], params)
    with pytest.raises(ValueError, match="layer_params"):
        pipeline(stage_fn, params, x, mesh=mesh, num_microbatches=4)
