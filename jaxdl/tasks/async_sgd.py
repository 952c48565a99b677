"""Asynchronous SGD simulated exactly: every update applies a gradient computed on parameters τ_t updates old.

    config.task = dict(name="async_sgd", dataset="fashion_mnist", batch_size=32, staleness="fixed", tau=16,
                       lr_scaling="none")
    config.optim.name = "sgd"                 # the server's update θ ← θ − η·g (any optax optimizer works)
    config.data.name = "fashion_mnist"        # the evaluators' test split

The model of asynchronous data parallelism (Downpour, Dean et al. 2012; Hogwild-style analyses, e.g. Lian et al.
2015): a parameter server applies the workers' gradients one at a time, θ_{t+1} = θ_t − η_t · ∇L(θ_{t−τ_t}; ξ_t),
where worker gradients were computed on a copy of the parameters read τ_t updates earlier and ξ_t is a fresh
minibatch. W workers of equal speed served round-robin give the fixed delay τ = W − 1; workers of random speed give
a staleness distribution. `staleness`:
  - "fixed": τ_t = tau;
  - "uniform": τ_t ~ uniform{0, …, tau};
  - "geometric": τ_t ~ Geometric with mean tau (P(τ) = p(1−p)^τ, p = 1/(1+tau)), truncated at `max_tau`
    (default 4·tau; the truncated mass is put on max_tau).
Before step τ_t there is no θ_{t−τ_t}: the gradient is taken at θ_0 (all workers start from the same copy).

Why a task and not an optax wrapper: an optax `GradientTransformation` receives gradients already computed at the
current θ_t; a wrapper could only *delay* them (apply g_{t−τ} at step t), which is the same thing for a fixed τ but
not for random τ_t (gradients would be applied twice or never). A task evaluates the gradient at the stale point
itself, so every minibatch is used exactly once for any staleness distribution, inside the trainer's jitted step:
the last R = τ_max + 1 parameter vectors live in a ring buffer in the task's carry (`state["carry"]`,
checkpointed, so resume is exact), the step pushes θ_t, draws τ_t, and the loss is evaluated at θ_{t−τ_t} through an
identity whose backward pass hands the gradient to θ_t (`_at`, exact: no θ + (θ_old − θ) rounding).

`lr_scaling="inverse"` (staleness-aware SGD, Zhang et al. 2016, IJCAI): the gradient is divided by max(1, τ_t),
i.e. the lr is η/τ_t for SGD (for adaptive optimizers it rescales the gradient they see, not their step).
Batches: the task draws them itself (`produces_batches`) from the host-held split, shuffled epochs seeded by the
run seed (the same data order for every τ); grad_accum must be 1. Metrics: loss (at the stale point), accuracy,
staleness (τ_t, mean over the log window), grad_scale.
Memory: the ring holds R copies of the parameters (τ_max = 64 and a 100k-parameter MLP: 26 MB).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.losses import batch_loss
from jaxdl.tasks._host_data import HostSplit
from jaxdl.tasks.base import Task as BaseTask

STALENESS = ("fixed", "uniform", "geometric")
LR_SCALING = ("none", "inverse")


def draw_staleness(key: jax.Array, kind: str, tau: int, max_tau: int) -> jax.Array:
    """int32 [] τ_t for one step (see the module docstring); `max_tau` is the ring's bound (geometric only)."""
    if kind == "fixed":
        return jnp.asarray(tau, jnp.int32)
    if kind == "uniform":
        return jax.random.randint(key, (), 0, tau + 1, jnp.int32)
    p = 1.0 / (1.0 + tau)
    u = jax.random.uniform(key, (), jnp.float32, minval=jnp.finfo(jnp.float32).tiny)
    g = jnp.floor(jnp.log(u) / jnp.log1p(-p)) if tau > 0 else jnp.zeros(())  # inverse CDF, support {0, 1, ...}
    return jnp.minimum(g, max_tau).astype(jnp.int32)


@jax.custom_vjp
def _at(params, stale, scale):
    """Forward: `stale`; backward: the cotangent × `scale` goes to `params` (the gradient at θ_{t−τ} for θ_t)."""
    del params, scale
    return stale


def _at_fwd(params, stale, scale):
    return stale, scale


def _at_bwd(scale, ct):
    grads = jax.tree.map(lambda c: (c * scale).astype(c.dtype), ct)
    return grads, jax.tree.map(jnp.zeros_like, ct), jnp.zeros_like(scale)


_at.defvjp(_at_fwd, _at_bwd)


class Task(BaseTask):
    produces_batches = True
    not_model_inputs = (*BaseTask.not_model_inputs, "stale", "staleness", "grad_scale")

    def __init__(
        self,
        *,
        dataset: str = "",
        split: str = "train",
        data_dir: str = "",
        batch_size: int = 32,
        staleness: str = "fixed",
        tau: int = 0,
        max_tau: int = 0,
        lr_scaling: str = "none",
    ):
        super().__init__()
        if not dataset:
            raise ValueError("config.task.dataset is required: the training split the simulated workers read")
        if staleness not in STALENESS:
            raise ValueError(f"config.task.staleness={staleness!r} is not one of {STALENESS}")
        if lr_scaling not in LR_SCALING:
            raise ValueError(f"config.task.lr_scaling={lr_scaling!r} is not one of {LR_SCALING}")
        if int(tau) != tau or tau < 0:
            raise ValueError(f"config.task.tau={tau!r} must be an integer >= 0 (updates of staleness)")
        if int(max_tau) != max_tau or max_tau < 0 or (max_tau and staleness != "geometric"):
            raise ValueError(
                f"config.task.max_tau={max_tau!r}: only the geometric staleness takes it (an integer >= tau; 0 = 4·tau)"
            )
        if staleness == "geometric" and max_tau and max_tau < tau:
            raise ValueError(f"config.task.max_tau={max_tau} must be >= tau={tau} (the mean of the geometric law)")
        if batch_size < 1:
            raise ValueError(f"config.task.batch_size={batch_size} must be >= 1")
        self.dataset, self.host = dataset, HostSplit(dataset, split, data_dir)
        self.batch_size, self.staleness, self.tau, self.lr_scaling = batch_size, staleness, int(tau), lr_scaling
        self.max_tau = int(max_tau or 4 * tau) if staleness == "geometric" else int(tau)

    def data_info(self, config) -> dict:
        from jaxdl import data

        return data.info(self.dataset, self.host.data_dir or None)

    # --------------------------------------------------------------------------------- the carried ring
    def init_carry(self, key: jax.Array, model: nnx.Module) -> dict:
        """{"ring": [R, *p.shape] per parameter leaf (θ_0 in every slot), "t": int32 [] steps done,
        "data_key": the key data of the shuffled epochs}."""
        leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
        ring = [jnp.broadcast_to(x, (self.max_tau + 1, *x.shape)).astype(x.dtype) for x in leaves]
        return {"ring": ring, "t": jnp.zeros((), jnp.int32), "data_key": jax.random.key_data(key)}

    def rows(self, data_key: jax.Array, t: jax.Array) -> jax.Array:
        """int32 [batch_size] example indices of step t: shuffled epochs of n // batch_size batches."""
        n = len(self.host)
        per_epoch = n // self.batch_size
        if per_epoch < 1:
            raise ValueError(f"config.task.batch_size={self.batch_size} exceeds the {n} examples of {self.dataset!r}")
        perm = jax.random.permutation(jax.random.fold_in(jax.random.wrap_key_data(data_key), t // per_epoch), n)
        return jax.lax.dynamic_slice(perm, ((t % per_epoch) * self.batch_size,), (self.batch_size,)).astype(jnp.int32)

    def make_batch(self, model: nnx.Module, carry: dict, key: jax.Array) -> tuple[dict, dict]:
        """Pushes θ_t into the ring, draws τ_t, and returns the minibatch with θ_{t−τ_t} ("stale": one array per
        parameter leaf), "staleness" int32 [] and "grad_scale" float32 []."""
        t, size = carry["t"], self.max_tau + 1
        leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
        ring = [r.at[t % size].set(x) for r, x in zip(carry["ring"], leaves, strict=True)]
        tau = jnp.minimum(draw_staleness(key, self.staleness, self.tau, self.max_tau), t)
        stale = [r[(t - tau) % size] for r in ring]
        scale = 1.0 / jnp.maximum(tau, 1).astype(jnp.float32) if self.lr_scaling == "inverse" else jnp.ones(())
        batch = self.host.gather(self.rows(carry["data_key"], t))
        batch |= {"stale": stale, "staleness": tau, "grad_scale": scale}
        return batch, {"ring": ring, "t": t + 1, "data_key": carry["data_key"]}

    # --------------------------------------------------------------------------------------- the loss
    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        if batch["input"].shape[0] != self.batch_size:
            raise ValueError("config.train.grad_accum must be 1 for async_sgd (a step is one worker's minibatch)")
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        treedef = jax.tree.structure(params)
        stale = jax.tree.unflatten(treedef, batch["stale"])
        worker = nnx.merge(graphdef, _at(params, stale, batch["grad_scale"]), rest, copy=True)
        logits = worker(batch["input"], train=True, rngs=rngs)
        nnx.update(model, nnx.state(worker, nnx.Not(nnx.Param)))  # batch statistics etc. the worker changed
        loss, acc = batch_loss(logits, batch)
        return loss, {
            "accuracy": acc,
            "staleness": batch["staleness"].astype(jnp.float32),
            "grad_scale": batch["grad_scale"],
        }
