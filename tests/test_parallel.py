"""Sharding strategies on 8 simulated CPU devices: the same numbers as on 1 device, and the parameters really split.

The model is the scanned transformer on real MNIST-1D batches; each strategy is a (mesh, config.sharding.strategy)
pair. One step's loss and gradients must equal the 1-device run within 1e-5 (fp32), 20 trainer steps must track
it, every parameter leaf must carry the sharding its logical axes and the strategy's rules say, and the per-device
parameter bytes must drop by the expected factor.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxdl import config as config_lib
from jaxdl import data, models, optim
from jaxdl.losses import classification_loss
from jaxdl.metrics import read_metrics
from jaxdl.parallel import rules as rules_lib
from jaxdl.parallel.mesh import make_mesh
from jaxdl.state import sharding_context
from jaxdl.train import train_and_evaluate

MODEL = dict(name="transformer", depth=4, dim=32, heads=8, mlp_dim=64)
GPIPE = dict(pipeline_microbatches=4)
CIRCULAR = dict(pipeline_microbatches=4, pipeline_schedule="circular", pipeline_repeats=2)
# 8 experts, top-2, capacity 1.25 (tokens do get dropped); 8 routing groups fixed so 1 device routes as 8 do
MOE = dict(moe_experts=8, moe_top_k=2, moe_capacity_factor=1.25, moe_groups=8)
STRATEGIES = {  # name: (config.mesh, config.sharding.strategy, other config.sharding options[, config.model extras])
    "dp": (dict(data=8), "dp", {}),
    "fsdp": (dict(data=1, fsdp=8), "fsdp", {}),
    "tp": (dict(data=1, tensor=8), "tp", {}),
    "fsdp_tp": (dict(data=1, fsdp=4, tensor=2), "fsdp+tp", {}),
    "dp_tp_sp": (dict(data=2, tensor=4), "tp+sp", {}),
    "pp_gpipe": (dict(data=2, pipeline=4), "pp", GPIPE),
    "pp_circular": (dict(data=4, pipeline=2), "pp", CIRCULAR),
    "pp_gpipe_remat": (dict(data=2, pipeline=4), "pp", GPIPE, dict(remat="full")),
    "dp_tp_pp": (dict(data=2, tensor=2, pipeline=2), "tp+pp", GPIPE),
    "ep": (dict(data=2, expert=4), "ep", {}, MOE),
    "ep_tp": (dict(data=1, expert=4, tensor=2), "ep+tp", {}, MOE),
}


def make_config(data_dir, mesh=None, strategy="dp", options=None, model=None, steps=20):
    c = config_lib.base()
    c.data.name = "mnist1d"
    c.data.data_dir = data_dir
    c.data.batch_size = 32
    c.data.eval_batch_size = 200
    c.model = ml_collections.ConfigDict(dict(MODEL, **(model or {})))
    c.optim.name = "adam"
    c.optim.lr = 3e-3
    c.train.steps = steps
    c.train.log_every = 1
    c.train.eval_every = 0
    c.train.checkpoint_every = 0
    c.train.progress = False
    for k, v in (mesh or {}).items():
        c.mesh[k] = v
    c.sharding.strategy = strategy
    for k, v in (options or {}).items():
        c.sharding[k] = v
    return c


def make_model(c):
    with nnx.use_eager_sharding(False):  # metadata only; the shardings are applied by the test
        return models.make(c.model, input_shape=(40,), num_classes=10, rngs=nnx.Rngs(params=0))


def loss_and_grads(c, devices, data_dir):
    """One step's loss and gradients (jitted with the strategy's shardings), and the sharded params."""
    mesh = make_mesh(c.mesh, devices)
    rules = rules_lib.resolve(c.sharding.strategy, c.sharding.rules)
    model = make_model(c)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    shardings = rules_lib.tree_shardings(params, mesh, rules)
    params = jax.device_put(params, shardings)
    batch_sharding = rules_lib.batch_sharding(mesh, rules)
    loader = data.TrainLoader(
        data.load("mnist1d", "train", data_dir),
        dataset="mnist1d",
        global_batch_size=32,
        seed=0,
        sharding=batch_sharding,
    )
    batch = next(loader.iterate(0))
    loader.close()

    def loss_fn(params, rest, batch):
        with sharding_context(c, mesh, rules):
            logits = nnx.merge(graphdef, params, rest, copy=True)(batch["input"], train=True)
            return classification_loss(logits, batch["label"])[0]

    replicated = NamedSharding(mesh, PartitionSpec())
    rest_shardings = rules_lib.tree_shardings(rest, mesh, rules)
    step = jax.jit(
        jax.value_and_grad(loss_fn),
        in_shardings=(shardings, rest_shardings, batch_sharding),
        out_shardings=(replicated, shardings),
    )
    loss, grads = step(params, rest, batch)
    return float(loss), grads, params


@pytest.fixture(scope="module")
def reference(data_dir):
    """1-device (loss, grads, params) per model variant (dense / MoE), computed once."""
    cache = {}

    def get(model):
        key = tuple(sorted((model or {}).items()))
        if key not in cache:
            cache[key] = loss_and_grads(make_config(data_dir, model=model), jax.devices()[:1], data_dir)
        return cache[key]

    return get


def _leaves(tree):
    path = lambda p: jax.tree_util.keystr(p, simple=True, separator="/").removesuffix("/value")
    return {path(p): x for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def _max_rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-30))


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_one_step_loss_and_grads_match_one_device(name, reference, data_dir):
    loss, grads, params = loss_and_grads(make_config(data_dir, *STRATEGIES[name]), jax.devices(), data_dir)
    ref_loss, ref_grads, _ = reference(_model(name))
    assert abs(loss - ref_loss) <= 1e-5 * abs(ref_loss)
    ref = _leaves(ref_grads)
    for k, g in _leaves(grads).items():
        assert _max_rel_err(g, ref[k]) <= 1e-5, k
    # gradients come back sharded like the parameters
    for k, g in _leaves(grads).items():
        assert g.sharding.spec == _leaves(params)[k].sharding.spec, k


EXPECTED_SPECS = {  # a few leaves per strategy, written out by hand (leading dim of block weights = layers)
    "dp": {"blocks/attn/wq": (), "blocks/mlp/up/kernel": ()},
    "fsdp": {
        "blocks/attn/wq": (None, "fsdp"),
        "blocks/attn/wo": (None, None, None, "fsdp"),
        "blocks/mlp/up/kernel": (None, "fsdp"),
        "blocks/mlp/down/kernel": (None, None, "fsdp"),
        "embed/kernel": (None, "fsdp"),
    },
    "tp": {
        "blocks/attn/wq": (None, None, "tensor"),  # column-parallel: heads split
        "blocks/attn/wo": (None, "tensor"),  # row-parallel
        "blocks/mlp/up/kernel": (None, None, "tensor"),
        "blocks/mlp/down/kernel": (None, "tensor"),
        "embed/kernel": (),
    },
    "dp_tp_pp": {
        "blocks/attn/wq": ("pipeline", None, "tensor"),  # stages own contiguous layers
        "blocks/mlp/down/kernel": ("pipeline", "tensor"),
        "embed/kernel": (),
    },
    "ep_tp": {
        "blocks/mlp/wi": (None, "expert", None, "tensor"),  # [layers, expert, embed, mlp]
        "blocks/mlp/wo": (None, "expert", "tensor"),
        "blocks/attn/wq": (None, None, "tensor"),
    },
    "fsdp_tp": {
        "blocks/attn/wq": (None, "fsdp", "tensor"),
        "blocks/mlp/up/kernel": (None, "fsdp", "tensor"),
        "blocks/mlp/down/kernel": (None, "tensor", "fsdp"),
    },
}


def _spec(x):
    s = tuple(x.sharding.spec)
    while s and s[-1] is None:
        s = s[:-1]
    return s


def _bytes_per_device(tree):
    return sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", list(EXPECTED_SPECS))
def test_parameters_are_sharded_as_the_rules_say(name, data_dir):
    _, _, params = loss_and_grads(make_config(data_dir, *STRATEGIES[name]), jax.devices(), data_dir)
    leaves = _leaves(params)
    for k, want in EXPECTED_SPECS[name].items():
        assert _spec(leaves[k]) == want, (k, leaves[k].sharding.spec)
    total = sum(x.nbytes for x in jax.tree.leaves(params))
    per_device = _bytes_per_device(params)
    # the big matrices split 8 ways (FSDP, TP) or 4 x 2; norms/biases/embeddings that have no rule stay whole
    bound = {"dp": 1.0, "fsdp": 0.2, "tp": 0.4, "fsdp_tp": 0.25, "dp_tp_pp": 0.4, "ep_tp": 0.3}[name]
    assert per_device <= bound * total, (per_device, total)
    if name == "dp":
        assert per_device == total


def test_fsdp_shards_optimizer_state(data_dir):
    """ZeRO-3: Adam's moments carry the parameters' logical axes, so the trainer's state sharding splits them."""
    c = make_config(data_dir, dict(data=1, fsdp=8), "fsdp")
    mesh, rules = make_mesh(c.mesh), rules_lib.resolve("fsdp")
    tx, _ = optim.make_optimizer(c.optim, c.train.steps)
    params = nnx.state(make_model(c), nnx.Param)
    shardings = rules_lib.tree_shardings(jax.eval_shape(tx.init, params), mesh, rules)
    opt_state = jax.jit(tx.init, out_shardings=shardings)(params)
    leaves = _leaves(opt_state)
    for moment in ("mu", "nu"):
        kernel = [x for k, x in leaves.items() if moment in k and "mlp/up/kernel" in k]
        assert len(kernel) == 1 and _spec(kernel[0]) == (None, "fsdp")
    total = sum(x.nbytes for x in jax.tree.leaves(opt_state))
    assert _bytes_per_device(opt_state) <= 0.2 * total


def _train_losses(workdir):
    return np.array([r["train/loss"] for r in read_metrics(workdir) if "train/loss" in r])


@pytest.fixture(scope="module")
def reference_curve(data_dir, tmp_path_factory):
    """1-device 20-step loss curve per model variant (dense / MoE), computed once."""
    cache = {}

    def get(model=None):
        key = tuple(sorted((model or {}).items()))
        if key not in cache:
            workdir = tmp_path_factory.mktemp("ref")
            train_and_evaluate(make_config(data_dir, model=model), str(workdir), devices=jax.devices()[:1])
            cache[key] = _train_losses(workdir)
        return cache[key]

    return get


def _model(name):
    return STRATEGIES[name][3] if len(STRATEGIES[name]) > 3 else None


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in STRATEGIES if n != "dp"])
def test_twenty_steps_track_one_device(name, reference_curve, data_dir, tmp_path):
    train_and_evaluate(make_config(data_dir, *STRATEGIES[name]), str(tmp_path))
    losses, ref = _train_losses(tmp_path), reference_curve(_model(name))
    assert len(losses) == 20 and ref[-1] < 0.9 * ref[0]  # it trains
    np.testing.assert_allclose(losses, ref, rtol=1e-4)


@pytest.mark.slow
def test_checkpoint_moves_between_meshes(reference_curve, data_dir, tmp_path):
    """Saved under FSDP=8 at step 10, resumed under TP=2 x DP=4: the loss curve continues as if uninterrupted."""
    first = make_config(data_dir, dict(data=1, fsdp=8), "fsdp", steps=10)
    first.train.checkpoint_every = 10
    train_and_evaluate(first, str(tmp_path))
    second = make_config(data_dir, dict(data=4, tensor=2), "tp", steps=20)
    train_and_evaluate(second, str(tmp_path))
    np.testing.assert_allclose(_train_losses(tmp_path), reference_curve(), rtol=1e-4)


def test_bad_strategy_and_indivisible_shapes_fail_clearly(data_dir, tmp_path):
    c = make_config(data_dir, strategy="fsdp+zero")
    with pytest.raises(ValueError, match="config.sharding.strategy.*'zero'"):
        config_lib.validate(c)
    c = make_config(data_dir, dict(data=1, tensor=8), "tp")
    c.model.heads = 4  # 4 heads cannot split over 8 devices
    with pytest.raises(ValueError, match=r"params.*attn.*w[qkv].*not divisible by the 8 devices"):
        train_and_evaluate(c, str(tmp_path))
    with pytest.raises(ValueError, match="config.mesh"):
        make_mesh(dict(tensor=3))


def test_constrain_is_a_noop_outside_the_trainer():
    x = jnp.ones((4, 3))
    assert rules_lib.constrain(x, ("batch", "embed")) is x
