"""Federated averaging (jaxdl.federated.fedavg, task fedavg) on real data (sklearn digits, jaxdl.data.digits).

References: one client with E = 1 through the trainer's own step equals a hand-written minibatch-SGD epoch over the
same examples in the same order; FedSGD's round equals lr × the mean of the clients' full-batch gradients."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl import config as config_lib
from jaxdl import models, tasks
from jaxdl.federated import fedavg
from jaxdl.state import make_optimizers, make_train_step


def xent(apply):
    def loss(p, x, y):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(apply(p, x), y))

    return loss


def setup(data_dir, **task):
    c = config_lib.base()
    c.data.name, c.data.data_dir = "digits", data_dir
    c.model = ml_collections.ConfigDict({"name": "mlp", "hidden": (16,)})
    c.task = ml_collections.ConfigDict(dict(name="fedavg", dataset="digits", data_dir=data_dir, **task))
    c.optim.name, c.optim.lr = "sgd", 1.0
    c.train.steps = 1
    t = tasks.make(c.task)
    with nnx.use_eager_sharding(False):
        model = models.make(c.model, input_shape=(28, 28, 1), num_classes=10, rngs=nnx.Rngs(params=0))
    return c, t, model


def test_one_client_one_epoch_is_plain_sgd(data_dir):
    c, task, model = setup(
        data_dir, clients=1, clients_per_round=1, local_epochs=1, local_batch_size=50, local_lr=0.1, local_shuffle=False
    )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx, schedule = make_optimizers(c, task)
    state = dict(params=params, rest=rest, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32))
    state |= dict(rng=jax.random.key_data(jax.random.key(0)), carry=None)
    new, metrics = jax.jit(make_train_step(graphdef, tx, schedule, c, task))(state, {})
    # reference: optax SGD over the client's examples, batches of 50 in partition order
    data = task.host.fetch(task.partition[0])
    apply = lambda p, x: nnx.merge(graphdef, p, rest)(x, train=False)
    ref_tx, p = optax.sgd(0.1), params
    opt = ref_tx.init(p)
    for i in range(len(data["label"]) // 50):
        rows = slice(50 * i, 50 * (i + 1))
        g = jax.grad(xent(apply))(p, data["input"][rows], data["label"][rows])
        upd, opt = ref_tx.update(g, opt, p)
        p = optax.apply_updates(p, upd)
    for a, b in zip(jax.tree.leaves(new["params"]), jax.tree.leaves(p), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)
    assert np.isfinite(float(metrics["loss"]))


def test_fedsgd_round_is_lr_times_mean_client_gradient(data_dir):
    _, task, model = setup(data_dir, clients=6, partition="shards", clients_per_round=3)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    apply = lambda p, x: nnx.merge(graphdef, p, rest)(x, train=False)
    part = task.partition[:3]
    data = task.host.fetch(part)  # input [3, n_k, 28, 28, 1]
    n_k = part.shape[1]
    f = fedavg.fed_objective(xent(apply), epochs=1, batch=n_k, lr=0.3)
    g = jax.grad(f)(params, data["input"], data["label"], jax.random.key_data(jax.random.key(0)))
    grads = [jax.grad(xent(apply))(params, data["input"][k], data["label"][k]) for k in range(3)]
    expected = jax.tree.map(lambda *gs: 0.3 * sum(gs) / 3, *grads)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_partitions():
    labels = np.repeat(np.arange(10), 100)
    iid = fedavg.partition(labels, 20, "iid", 2, seed=0)
    shards = fedavg.partition(labels, 20, "shards", 2, seed=0)
    for p in (iid, shards):
        assert p.shape == (20, 50) and len(np.unique(p)) == 1000  # disjoint, everything used
    assert max(len(np.unique(labels[row])) for row in shards) <= 2  # shards of 25 never straddle a class here
    assert min(len(np.unique(labels[row])) for row in iid) >= 8
    np.testing.assert_array_equal(shards, fedavg.partition(labels, 20, "shards", 2, seed=0))  # seeded


@pytest.mark.slow
def test_fedavg_trains_and_non_iid_costs_accuracy(data_dir, tmp_path):
    from jaxdl.train import train_and_evaluate

    out = {}
    for kind in ("iid", "shards"):
        c, _, _ = setup(data_dir, clients=20, partition=kind, clients_per_round=5, local_epochs=2, local_batch_size=20)
        c.task.local_lr = 0.1
        c.train.steps, c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 15, 15, 0, 0
        c.train.progress = False
        out[kind] = train_and_evaluate(c, str(tmp_path / kind), devices=jax.devices()[:1])["eval/accuracy"]
    assert out["iid"] > 0.85, out
    assert out["shards"] < out["iid"], out


@pytest.mark.parametrize(
    "task,message",
    [
        ({"dataset": ""}, "config.task.dataset is required"),
        ({"clients": 5, "clients_per_round": 6}, r"config.task.clients_per_round=6 must be in \[1, clients=5\]"),
        ({"partition": "dirichlet"}, "config.task.partition='dirichlet' is not one of"),
    ],
)
def test_bad_fedavg_configs(data_dir, task, message):
    with pytest.raises(ValueError, match=message):
        tasks.make({"name": "fedavg", "dataset": "digits", "data_dir": data_dir, **task})
