"""Federated averaging (McMahan et al. 2017): client partitions, local SGD, and the round as a pseudo-gradient.

A round: sample m of the K clients, each runs `epochs` epochs of minibatch SGD (batch b, lr η) from the global
parameters θ on its own examples, and the server averages the results weighted by client size (equal sizes here).
Written as FedOpt (Reddi et al. 2021): the round's *pseudo-gradient* is Δ = θ - mean_k θ_k, and a server optimizer
applies it; plain SGD with lr 1 gives FedAvg's θ ← mean_k θ_k exactly. `fed_objective` returns a scalar whose
gradient w.r.t. θ is Δ (`jax.custom_vjp`), so the trainer's ordinary step (`jaxdl.state`) runs a round per step
with `config.optim = sgd, lr 1` (or any server optimizer: FedAdam, server momentum...). FedSGD is the special
case epochs = 1, b = n_k (one full-batch gradient step per client): Δ = η · mean_k ∇L_k(θ).

Clients train in parallel with `jax.vmap` over the sampled clients, and, on a mesh whose `data` axis has several
devices, with the clients split over that axis (`jax.shard_map`; the average is a `psum` across it), so one step
trains m / D clients per device; each client's local minibatch order is a permutation per epoch from the round's
key (`shuffle=False`: source order, used by the equivalence test).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

PARTITIONS = ("iid", "shards")

# loss(params, x [batch, ...], y [batch]) -> scalar mean loss of a minibatch
BatchLoss = Callable[..., jax.Array]


def partition(labels: np.ndarray, clients: int, kind: str, shards_per_client: int, seed: int) -> np.ndarray:
    """int64 [clients, n_k] example indices of each client (n_k = N // clients; the remainder is unused).

    `iid`: a seeded random permutation cut into equal parts. `shards` (McMahan et al.'s pathological non-IID
    split): the examples sorted by label, cut into clients·shards_per_client equal shards, each client given
    `shards_per_client` random shards (so it sees about that many classes)."""
    n = len(labels)
    rng = np.random.default_rng(seed)
    if kind not in PARTITIONS:
        raise ValueError(f"config.task.partition={kind!r} is not one of {PARTITIONS}")
    if clients < 1 or n // clients < 1:
        raise ValueError(f"config.task.clients={clients} must be in [1, {n}] (the {n} examples)")
    per = n // clients
    if kind == "iid":
        return rng.permutation(n)[: clients * per].reshape(clients, per)
    shards = clients * shards_per_client
    if shards_per_client < 1 or n // shards < 1:
        raise ValueError(f"config.task.shards_per_client={shards_per_client} must be in [1, {n // clients}]")
    size = n // shards
    order = _sorted_by_label(labels, rng)
    pieces = order[: shards * size].reshape(shards, size)
    assign = rng.permutation(shards).reshape(clients, shards_per_client)
    return pieces[assign].reshape(clients, shards_per_client * size)


def _sorted_by_label(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices sorted by label, ties in random order."""
    perm = rng.permutation(len(labels))
    return perm[np.argsort(labels[perm], kind="stable")]


def local_train(
    loss: BatchLoss, params, x: jax.Array, y: jax.Array, key: jax.Array, *, epochs: int, batch: int, lr: float,
    shuffle: bool = True,
):  # fmt: skip
    """One client's `epochs` epochs of SGD on x [n, ...], y [n] from `params` (n // batch steps per epoch; the
    remainder of each epoch's order is skipped). Returns the client's parameters."""
    n = x.shape[0]
    steps = n // batch
    if steps < 1:
        raise ValueError(f"config.task.local_batch_size={batch} exceeds a client's {n} examples")

    def epoch(params, k):
        order = jax.random.permutation(k, n) if shuffle else jnp.arange(n)
        idx = order[: steps * batch].reshape(steps, batch)

        def step(params, rows):
            g = jax.grad(loss)(params, x[rows], y[rows])
            return jax.tree.map(lambda p, g: p - lr * g.astype(p.dtype), params, g), None

        return jax.lax.scan(step, params, idx)[0], None

    return jax.lax.scan(epoch, params, jax.random.split(key, epochs))[0]


def _varying(x: jax.Array, axes: tuple[str, ...]) -> jax.Array:
    """x marked as varying over the manual mesh `axes` (jax >= 0.12: lax.pcast; 0.11: lax.pvary)."""
    if hasattr(jax.lax, "pcast"):
        return jax.lax.pcast(x, axes, to="varying")
    return jax.lax.pvary(x, axes)


def fed_objective(
    loss: BatchLoss, *, epochs: int, batch: int, lr: float, shuffle: bool = True, mesh=None, client_axes=()
) -> Callable:
    """f(params, x [m, n_k, ...], y [m, n_k], key_data) -> the mean loss of the global params on the round's
    clients' data (forward), whose gradient w.r.t. params is the FedAvg pseudo-gradient θ - mean_k θ_k.

    `client_axes` (mesh axes of `mesh`, e.g. ("data",)): the clients are split over them with `jax.shard_map`, each
    device trains its m / D clients (vmap) and the average is a `psum` across the axes divided by m; the other mesh
    axes stay automatic. m must divide evenly. Client k's key is the k-th of one split of the round's key whatever
    the device count, so a round on D devices equals the round on one device up to the order of the float sums."""

    def local_sum(params, x, y, key_data):
        """Sum over this device's clients of their trained parameters."""
        train = lambda xk, yk, kk: local_train(
            loss, params, xk, yk, jax.random.wrap_key_data(kk), epochs=epochs, batch=batch, lr=lr, shuffle=shuffle
        )
        local = jax.vmap(train)(x, y, key_data)
        return jax.tree.map(lambda p: jnp.sum(p.astype(jnp.float32), axis=0), local)

    def clients_mean(params, x, y, key_data):
        m = x.shape[0]
        keys = jax.random.key_data(jax.random.split(jax.random.wrap_key_data(key_data), m))
        if client_axes:
            devices = int(np.prod([mesh.shape[a] for a in client_axes]))
            if m % devices:
                raise ValueError(
                    f"config.task.clients_per_round={m} is not divisible by the {devices} devices of mesh axes "
                    f"{tuple(client_axes)} the clients are split over (change clients_per_round or config.mesh)"
                )
            spec = jax.sharding.PartitionSpec(tuple(client_axes))

            def body(params, x, y, keys):
                # each device's copy of θ marked device-varying: otherwise the gradient w.r.t. the replicated θ
                # inside the shard_map is transposed into a psum over the axis (every client would step on the sum
                # of all clients' gradients)
                params = jax.tree.map(lambda p: _varying(p, tuple(client_axes)), params)
                return jax.tree.map(lambda s: jax.lax.psum(s, tuple(client_axes)), local_sum(params, x, y, keys))

            total = jax.shard_map(
                body,
                mesh=mesh,
                in_specs=(jax.sharding.PartitionSpec(), spec, spec, spec),
                out_specs=jax.sharding.PartitionSpec(),
                axis_names=set(client_axes),
            )(params, x, y, keys)
        else:
            total = local_sum(params, x, y, keys)
        return jax.tree.map(lambda s, p: (s / m).astype(p.dtype), total, params)

    @jax.custom_vjp
    def f(params, x, y, key_data):
        return jnp.mean(jax.vmap(loss, in_axes=(None, 0, 0))(params, x, y))

    def fwd(params, x, y, key_data):
        return f(params, x, y, key_data), (params, x, y, key_data)

    def bwd(res, cotangent):
        params, x, y, key_data = res
        avg = clients_mean(params, x, y, key_data)
        delta = jax.tree.map(lambda p, a: (cotangent * (p - a)).astype(p.dtype), params, avg)
        return delta, None, None, None

    f.defvjp(fwd, bwd)
    return f
