"""Federated averaging as a task: one communication round per train step (`jaxdl.federated.fedavg`).

    config.task = dict(name="fedavg", dataset="fashion_mnist", clients=100, partition="shards", clients_per_round=10,
                       local_epochs=5, local_batch_size=50, local_lr=0.05)
    config.optim.name, config.optim.lr = "sgd", 1.0          # the server optimizer: sgd lr 1 = FedAvg's average
    config.data.name = "fashion_mnist"                        # the evaluators' test split

The K clients' partitions (`iid` or class `shards`, seeded by `partition_seed`) are fixed at construction from the
host-held train split; each step samples `clients_per_round` of them without replacement from the step's key,
fetches their examples ([m, n_k, ...], `jax.pure_callback`) and trains them in parallel: vmap on each device, the
clients split over the mesh axes of the logical `batch` axis (`data`, and `fsdp` under an FSDP strategy) with
`jax.shard_map`, the average a `psum` across them (clients_per_round must divide by those devices). FedSGD:
local_epochs=1 and local_batch_size = n_k. Local training runs the model with `train=False` (no dropout or batch
statistics on clients). Metrics: loss (global model on the round's client data), accuracy.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.federated import fedavg
from jaxdl.parallel import rules as rules_lib
from jaxdl.tasks._host_data import HostSplit
from jaxdl.tasks.base import Task as BaseTask


class Task(BaseTask):
    produces_batches = True

    def __init__(
        self,
        *,
        dataset: str = "",
        split: str = "train",
        data_dir: str = "",
        clients: int = 100,
        partition: str = "iid",
        shards_per_client: int = 2,
        partition_seed: int = 0,
        clients_per_round: int = 10,
        local_epochs: int = 1,
        local_batch_size: int = 10,
        local_lr: float = 0.1,
        local_shuffle: bool = True,
    ):
        super().__init__()
        if not dataset:
            raise ValueError("config.task.dataset is required: the training split the clients' partitions cut")
        if partition not in fedavg.PARTITIONS:
            raise ValueError(f"config.task.partition={partition!r} is not one of {fedavg.PARTITIONS}")
        if not 1 <= clients_per_round <= clients:
            raise ValueError(f"config.task.clients_per_round={clients_per_round} must be in [1, clients={clients}]")
        if local_epochs < 1 or local_batch_size < 1 or not local_lr > 0:
            raise ValueError(
                f"config.task.local_epochs={local_epochs}, local_batch_size={local_batch_size} must be >= 1 and "
                f"local_lr={local_lr} > 0"
            )
        self.dataset, self.host = dataset, HostSplit(dataset, split, data_dir)
        self.clients, self.partition_kind, self.shards_per_client = clients, partition, shards_per_client
        self.partition_seed, self.clients_per_round = partition_seed, clients_per_round
        self.local_epochs, self.local_batch_size, self.local_lr = local_epochs, local_batch_size, local_lr
        self.local_shuffle = local_shuffle
        self._partition: np.ndarray | None = None

    def data_info(self, config) -> dict:
        from jaxdl import data

        return data.info(self.dataset, self.host.data_dir or None)

    @property
    def partition(self) -> np.ndarray:
        """int64 [clients, n_k] example indices of each client."""
        if self._partition is None:
            self._partition = fedavg.partition(
                self.host.labels(), self.clients, self.partition_kind, self.shards_per_client, self.partition_seed
            )
            if self.local_batch_size > self._partition.shape[1]:
                raise ValueError(
                    f"config.task.local_batch_size={self.local_batch_size} exceeds a client's "
                    f"{self._partition.shape[1]} examples"
                )
        return self._partition

    def make_batch(self, model: nnx.Module, carry, key: jax.Array) -> tuple[dict, None]:
        """The sampled clients' data: input [m, n_k, ...], label [m, n_k], client [m]."""
        chosen = jax.random.choice(key, self.clients, (self.clients_per_round,), replace=False)
        indices = jnp.asarray(self.partition, jnp.int32)[chosen]
        batch = self.host.gather(indices)
        batch["client"] = chosen.astype(jnp.int32)
        return batch, carry

    def model_inputs(self, batch: dict) -> dict:
        return {}

    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        if batch["input"].shape[0] != self.clients_per_round:
            raise ValueError("config.train.grad_accum must be 1 for fedavg (a step is one round over all its clients)")
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        apply = lambda p, x: nnx.merge(graphdef, p, rest, copy=True)(x, train=False).astype(jnp.float32)

        def batch_loss(p, x, y):
            logits = apply(p, x)
            return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, y[:, None], -1)[:, 0])

        active = rules_lib.active()  # the trainer's mesh: clients split over the axes the batch is split over
        objective = fedavg.fed_objective(
            batch_loss,
            epochs=self.local_epochs,
            batch=self.local_batch_size,
            lr=self.local_lr,
            shuffle=self.local_shuffle,
            mesh=active[0] if active else None,
            client_axes=rules_lib.mesh_axes("batch"),
        )
        loss = objective(params, batch["input"], batch["label"], jax.random.key_data(rngs.sampling()))
        x = batch["input"].reshape(-1, *batch["input"].shape[2:])
        pred = jnp.argmax(jax.lax.stop_gradient(apply(params, x)), -1)
        return loss, {"accuracy": jnp.mean(pred == batch["label"].reshape(-1))}
