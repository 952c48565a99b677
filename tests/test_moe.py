"""MoeMlp: routing, capacity and aux losses against an independent numpy reference; expert parallelism
(shard_map + all_to_all) on 8 simulated CPU devices against the 1-device run with the same groups."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.layers.mlp import Mlp
from jaxdl.layers.moe import MoeMlp
from jaxdl.parallel import rules as rules_lib
from jaxdl.parallel.mesh import make_mesh

EP_RULES = (("batch", ("data", "expert")), ("expert", "expert"))


def make(dim=8, hidden=16, seed=0, **kw):
    with nnx.use_eager_sharding(False):  # metadata only; tests place the parameters themselves
        return MoeMlp(dim, hidden, rngs=nnx.Rngs(params=seed), **kw)


def apply(m, x, method="__call__"):
    """m(x) (or m.route(x)) under jit: one compile instead of dozens of eager op dispatches."""
    graphdef, state = nnx.split(m)
    return jax.jit(lambda state, x: getattr(nnx.merge(graphdef, state), method)(x))(state, x)


def weights(m):
    return {k: np.asarray(getattr(m, k)[...], np.float64) for k in ("router", "wi", "wo")}


def np_gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def np_moe(x, w, *, top_k, capacity_factor, num_groups):
    """Loop reference in float64: returns y and the aux values; capacity per group, top-1 choices first."""
    b, length, d = x.shape
    e = w["router"].shape[1]
    xs = np.asarray(x, np.float64).reshape(num_groups, -1, d)
    s = xs.shape[1]
    cap = s if not capacity_factor else min(s, int(np.ceil(capacity_factor * s * top_k / e)))
    logits = xs @ w["router"]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    index = np.argsort(-probs, axis=-1, kind="stable")[..., :top_k]
    top_p = np.take_along_axis(probs, index, -1)
    gates = top_p / top_p.sum(-1, keepdims=True) if top_k > 1 else top_p
    kept = np.zeros(index.shape, bool)
    y = np.zeros_like(xs)
    for g in range(num_groups):
        load = np.zeros(e, int)
        for k in range(top_k):
            for t in range(s):
                ex = index[g, t, k]
                if load[ex] < cap:
                    load[ex] += 1
                    kept[g, t, k] = True
                    y[g, t] += gates[g, t, k] * (np_gelu(xs[g, t] @ w["wi"][ex]) @ w["wo"][ex])
    counts = np.bincount(index.ravel(), minlength=e)
    lse = np.log(np.exp(logits).sum(-1))
    aux = dict(
        load_balance_loss=e * np.sum(counts / index.size * probs.mean((0, 1))),
        router_z_loss=np.mean(lse**2),
        dropped_fraction=1.0 - kept.sum() / kept.size,
        max_expert_load=e * counts.max() / index.size,
    )
    return y.reshape(b, length, d), aux, kept.reshape(b * length, top_k)


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-30))


def check_aux(aux, want, tol=1e-5):
    for k, v in want.items():
        assert abs(float(aux[k]) - v) <= tol * max(1.0, abs(v)), (k, float(aux[k]), v)


# ----------------------------------------------------------------------------------------- numerics
@pytest.mark.parametrize("top_k,num_groups", [(1, 1), (2, 1), (2, 3), (3, 2)])
def test_unlimited_capacity_matches_per_token_reference(top_k, num_groups):
    m = make(num_experts=4, top_k=top_k, capacity_factor=None, num_groups=num_groups)
    x = jax.random.normal(jax.random.key(1), (2, 6, 8))
    y, aux = apply(m, x)
    want, want_aux, _ = np_moe(x, weights(m), top_k=top_k, capacity_factor=None, num_groups=num_groups)
    assert y.shape == x.shape and rel_err(y, want) <= 1e-5
    check_aux(aux, want_aux)
    assert float(aux["dropped_fraction"]) == 0.0


def test_gradients_match_naive_jax_reference():
    """Gradients (router through the gates, experts, input) equal those of a gather-based per-token MoE."""
    m = make(num_experts=4, top_k=2, capacity_factor=0)
    graphdef, params = nnx.split(m)
    x = jax.random.normal(jax.random.key(2), (2, 5, 8))
    r = jax.random.normal(jax.random.key(3), x.shape)

    def naive(p, x):
        def token(v):
            probs = jax.nn.softmax(v @ p["router"][...])
            top_p, idx = jax.lax.top_k(probs, 2)
            ffn = lambda e: nnx.gelu(v @ p["wi"][...][e]) @ p["wo"][...][e]
            return sum(top_p[k] / top_p.sum() * ffn(idx[k]) for k in range(2))

        return jnp.sum(jax.vmap(jax.vmap(token))(x) * r)

    layer = lambda p, x: jnp.sum(nnx.merge(graphdef, p)(x)[0] * r)
    got = jax.jit(jax.grad(layer, argnums=(0, 1)))(params, x)
    want = jax.jit(jax.grad(naive, argnums=(0, 1)))(params, x)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert rel_err(a, b) <= 1e-5


def test_single_expert_equals_dense_mlp():
    m = make(num_experts=1, top_k=1, capacity_factor=1.0)
    with nnx.use_eager_sharding(False):
        mlp = Mlp(8, 16, dtype="float32", param_dtype="float32", rngs=nnx.Rngs(params=5))
    mlp.up.kernel[...] = m.wi[...][0]
    mlp.down.kernel[...] = m.wo[...][0]
    x = jax.random.normal(jax.random.key(4), (3, 5, 8))
    y, aux = apply(m, x)
    assert rel_err(y, nnx.jit(lambda mlp, x: mlp(x, train=False, rngs=None))(mlp, x)) <= 1e-5
    assert float(aux["dropped_fraction"]) == 0.0 and abs(float(aux["load_balance_loss"]) - 1.0) < 1e-6


def test_capacity_drops_match_numpy_count():
    m = make(num_experts=4, top_k=2, capacity_factor=0.5, num_groups=2, seed=3)
    x = jax.random.normal(jax.random.key(5), (4, 12, 8))
    y, aux = apply(m, x)
    want, want_aux, kept = np_moe(x, weights(m), top_k=2, capacity_factor=0.5, num_groups=2)
    # 2 groups of 24 tokens: capacity ceil(0.5 * 24 * 2 / 4) = 6 slots per expert for 48 assignments
    assert apply(m, x, "route").dispatch.shape == (2, 24, 4, 6)
    assert 0.3 < want_aux["dropped_fraction"] < 1.0
    check_aux(aux, want_aux)
    assert rel_err(y, want) <= 1e-5
    y = np.asarray(y).reshape(-1, 8)
    gone = ~kept.any(-1)
    assert gone.sum() >= 3 and np.all(y[gone] == 0.0)
    assert np.all(np.abs(y[~gone]).max(-1) > 0)
    # the routing's own bookkeeping agrees: kept assignments sit in distinct slots below capacity
    r = apply(m, x, "route")
    np.testing.assert_array_equal(np.asarray(r.kept).reshape(-1, 2), kept)
    assert np.asarray(r.dispatch).sum() == kept.sum() and np.asarray(r.dispatch).sum((1,)).max() == 1.0


def test_capacity_priority_top1_before_top2():
    """Expert 0 is every token's first choice: with capacity C the first C tokens keep it, the rest drop it,
    and no second choice can take an expert-0 slot."""
    m = make(dim=4, num_experts=4, top_k=2, capacity_factor=0.5)
    m.router[...] = jnp.array([[4.0, 2.0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    x = jnp.zeros((1, 8, 4)).at[..., 0].set(1.0)  # all tokens: expert 0 first, expert 1 second
    r = apply(m, x, "route")
    assert r.dispatch.shape[-1] == 2  # C = ceil(0.5 * 8 * 2 / 4)
    np.testing.assert_array_equal(np.asarray(r.expert_index[0, :, 0]), 0)
    np.testing.assert_array_equal(np.asarray(r.kept[0, :, 0]), [1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(r.kept[0, :, 1]), [1, 1, 0, 0, 0, 0, 0, 0])
    assert float(apply(m, x)[1]["dropped_fraction"]) == 0.75


def test_load_balance_loss():
    e = 4
    m = make(dim=e, num_experts=e, top_k=1, capacity_factor=None)
    # formula on random routing (checked against numpy in the tests above); here the extremes:
    # balanced: token i is the basis vector e_(i mod E) and the router is a scaled identity, so every expert gets
    # the same number of tokens and, by symmetry, the same mean probability -> exactly 1
    m.router[...] = 3.0 * jnp.eye(e)
    x = jnp.concatenate([jnp.eye(e), jnp.eye(e)])[None]
    aux = apply(m, x)[1]
    assert abs(float(aux["load_balance_loss"]) - 1.0) < 1e-6
    assert float(aux["max_expert_load"]) == 1.0
    want = np_moe(x, weights(m), top_k=1, capacity_factor=None, num_groups=1)[1]
    check_aux(aux, want)
    # collapsed: all tokens to expert 0 with probability ~1 -> E
    m.router[...] = 30.0 * jnp.eye(e)
    aux = apply(m, jnp.zeros((2, 3, e)).at[..., 0].set(1.0))[1]
    assert abs(float(aux["load_balance_loss"]) - e) < 1e-5 and float(aux["max_expert_load"]) == e
    # zero router: uniform probabilities (P_e = 1/E), so the loss is sum_e f_e = 1 whatever the tie-break
    m2 = make(dim=8, num_experts=e, top_k=2, capacity_factor=None)
    m2.router[...] = jnp.zeros((8, e))
    aux = apply(m2, jax.random.normal(jax.random.key(0), (2, 3, 8)))[1]
    assert abs(float(aux["load_balance_loss"]) - 1.0) < 1e-6
    assert abs(float(aux["router_z_loss"]) - np.log(e) ** 2) < 1e-5


# ------------------------------------------------------------------------------------- expert parallel
EP_CASES = {  # name: (mesh, extra rules, num_groups, impl)
    "expert8": (dict(expert=8), (), 8, "auto"),
    "expert4_data2": (dict(expert=4, data=-1), (), 8, "auto"),
    "expert4_data2_groups4": (dict(expert=4, data=-1), (), 4, "auto"),
    "expert4_tensor2": (dict(expert=4, tensor=2), (("mlp", "tensor"),), 4, "auto"),
    "einsum_on_expert4_data2": (dict(expert=4, data=-1), (), 8, "einsum"),
    "batch_not_over_expert": (dict(expert=4, data=-1), (("batch", "data"),), 4, "auto"),
}
EP_MODEL = dict(dim=16, hidden=32, num_experts=8, top_k=2, capacity_factor=1.0, seed=7)


def _ep_step(num_groups, impl, mesh=None, rules=(), dtype="float32"):
    m = make(num_groups=num_groups, impl=impl, dtype=dtype, **EP_MODEL)
    graphdef, params = nnx.split(m)
    x = jax.random.normal(jax.random.key(11), (16, 4, 16))
    r = jax.random.normal(jax.random.key(12), x.shape)

    def loss(params, x):
        if mesh is None:
            y, aux = nnx.merge(graphdef, params)(x)
        else:
            with rules_lib.activation_rules(mesh, rules):
                y, aux = nnx.merge(graphdef, params)(x)
        return jnp.sum(y.astype(jnp.float32) * r) + aux["load_balance_loss"] + 0.01 * aux["router_z_loss"], (y, aux)

    if mesh is not None:
        params = jax.device_put(params, rules_lib.tree_shardings(params, mesh, rules))
        x = jax.device_put(x, rules_lib.batch_sharding(mesh, rules))
    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)).lower(params, x).compile()
    (value, (y, aux)), grads = step(params, x)
    return dict(value=value, y=y, aux=aux, grads=grads, params=params, hlo=step.as_text())


_REFERENCE = {}


def _reference(num_groups):
    if num_groups not in _REFERENCE:
        _REFERENCE[num_groups] = _ep_step(num_groups, "auto")
    return _REFERENCE[num_groups]


@pytest.mark.parametrize("name", list(EP_CASES))
def test_expert_parallel_matches_one_device(name):
    mesh_axes, extra, num_groups, impl = EP_CASES[name]
    mesh, rules = make_mesh(mesh_axes), tuple(extra) + EP_RULES
    got, want = _ep_step(num_groups, impl, mesh, rules), _reference(num_groups)
    assert float(want["aux"]["dropped_fraction"]) > 0.05  # the per-group capacity really bites
    assert abs(float(got["value"]) - float(want["value"])) <= 1e-5 * abs(float(want["value"]))
    check_aux(got["aux"], {k: float(v) for k, v in want["aux"].items()})
    assert rel_err(got["y"], want["y"]) <= 1e-5
    for a, b in zip(jax.tree.leaves(got["grads"]), jax.tree.leaves(want["grads"]), strict=True):
        assert rel_err(a, b) <= 1e-5
    # the expert weights (and their gradients) are split over the expert axis
    wi_spec = ("expert", None, "tensor") if "tensor" in mesh_axes else ("expert", None, None)
    params, grads = got["params"], got["grads"][0]
    assert tuple(params["wi"][...].sharding.spec) == wi_spec
    assert tuple(params["wo"][...].sharding.spec)[0] == "expert"
    assert tuple(grads["wi"][...].sharding.spec)[0] == "expert"
    assert params["wi"][...].addressable_shards[0].data.shape[0] == 8 // mesh_axes["expert"]
    if impl == "auto":  # dispatch and return, forward and backward
        assert got["hlo"].count(" all-to-all(") == 4, name
    if name in ("expert8", "expert4_data2"):  # groups already where the batch lies: nothing is gathered
        assert " all-gather(" not in got["hlo"] and " all-gather-start(" not in got["hlo"]


def test_bfloat16_expert_parallel_close_to_float32():
    mesh, rules = make_mesh(dict(expert=4, data=-1)), EP_RULES
    got = _ep_step(8, "auto", mesh, rules, dtype="bfloat16")
    want = _reference(8)
    assert got["y"].dtype == jnp.bfloat16 and rel_err(got["y"], want["y"]) <= 2e-2
    check_aux(got["aux"], {k: float(v) for k, v in want["aux"].items()})  # the router runs in fp32 either way
    for a, b in zip(jax.tree.leaves(got["grads"]), jax.tree.leaves(want["grads"]), strict=True):
        assert a.dtype == jnp.float32 and rel_err(a, b) <= 3e-2


def test_default_groups_one_per_batch_shard():
    m = make(num_experts=8)
    assert m.groups(64) == 1
    for axes, n, want in ((dict(expert=4, data=2), 8, 8), (dict(expert=4), 4, 4), (dict(data=2), 2, 2)):
        with rules_lib.activation_rules(make_mesh(axes, jax.devices()[:n]), EP_RULES):
            assert m.groups(64) == want, axes
    with rules_lib.activation_rules(make_mesh(dict(data=2, expert=4)), (("batch", "data"), ("expert", "expert"))):
        assert m.groups(64) == 4  # batch not split over the experts: lcm(2, 4)


# ------------------------------------------------------------------------------------------- errors
def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="top_k"):
        make(num_experts=2, top_k=3)
    with pytest.raises(ValueError, match="capacity_factor"):
        make(num_experts=2, capacity_factor=-1.0)
    with pytest.raises(ValueError, match="impl"):
        make(num_experts=2, impl="dense")
    x = jnp.ones((2, 5, 8))
    with pytest.raises(ValueError, match="num_groups=3"):
        make(num_experts=4, num_groups=3)(x)
    with pytest.raises(ValueError, match="impl='all_to_all'"):
        make(num_experts=4, impl="all_to_all")(x)
    mesh = make_mesh(dict(expert=4, data=-1))
    with rules_lib.activation_rules(mesh, EP_RULES):
        with pytest.raises(ValueError, match="num_experts=6"):
            make(num_experts=6)(jnp.ones((8, 2, 8)))
        with pytest.raises(ValueError, match="num_groups=2"):
            make(num_experts=4, num_groups=2)(jnp.ones((8, 2, 8)))
        with pytest.raises(ValueError, match="default num_groups=8"):
            make(num_experts=4)(jnp.ones((1, 3, 8)))
