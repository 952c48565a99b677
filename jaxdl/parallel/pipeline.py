"""Pipeline parallelism over the `pipeline` mesh axis with `jax.shard_map` + `jax.lax.ppermute`.

The model's layers are stacked on a leading `layers` dim L (as `nnx.scan` stacks them). `pipeline()` splits them
into chunks of `Lc = L / (P * repeats)` consecutive layers, P = mesh.shape["pipeline"], and runs `stage_fn`
(one chunk) on each device of the ring, passing activations to the next device with `ppermute`.

Shapes: x [B, ...] is cut into M = num_microbatches microbatches [mb = B/M, ...]; microbatch m is the strided
slice x[m::M], so a batch dim sharded over `data` stays sharded within every microbatch. Inside the shard_map
(manual over `pipeline` only; data/fsdp/tensor stay automatic) each device holds its chunks [repeats, Lc, ...],
one activation `state` [mb, ...] in flight, and a buffer [M, mb, ...].

Schedules (a "work item" is one microbatch in one trip around the ring, numbered i = trip * M + m):
  gpipe     repeats = 1: device p holds layers [p*Lc, (p+1)*Lc). At step t device p runs item t - p, so the
            microbatches enter one per step and flow stage to stage; M + P - 1 steps, of which P - 1 are the
            fill/drain bubble on each device (bubble fraction (P-1)/(M+P-1)).
  circular  repeats = R > 1 (interleaved / looped): chunk c = r*P + p lives on device p, so a microbatch goes
            around the ring R times. Device 0 feeds fresh microbatches for the first M steps, afterwards the
            activations that come back from device P-1 (held in the buffer until their turn, which needs M >= P).
            M*R + P - 1 steps, each 1/R of a GPipe step's work, still P - 1 of them bubble: the bubble fraction
            shrinks to (P-1)/(M*R+P-1) at the price of R times more ppermutes.
            The layer order means device p needs layers {l : (l // Lc) % P == p}: a leading dim sharded as
            P("pipeline") (contiguous blocks) is re-laid-out (all-to-all of the weights) on every call.
Both schedules share one loop: device P-1's output also travels the ring's wrap edge back to device 0, whose
buffer ends up holding the final outputs (summed out of device 0 with a masked psum). The loop is a `lax.scan`,
so `jax.grad` works (ppermute transposes to the reverse ppermute); `remat=True` wraps `stage_fn` in
`jax.checkpoint` so only each step's stage input is saved for the backward pass. Bubble steps compute on
zeros/stale values whose results are discarded.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

SCHEDULES = ("gpipe", "circular")


def _to_varying(x, axis: str):
    """Marks a value that is equal on all devices as device-varying (scan carries must keep one type)."""
    if hasattr(jax.lax, "pcast"):  # jax >= 0.12
        return jax.lax.pcast(x, axis, to="varying")
    return jax.lax.pvary(x, axis)  # jax 0.11


def _ring_shift(y, axis: str, num_stages: int):
    """Sends device i's `y` to device (i + 1) % P.

    A single ppermute with the full ring [(i, (i+1) % P)] is one collective-permute whose source-target pairs
    form a cycle; some XLA GPU versions reject or deadlock on such cycles (the failure MaxText's circular pipeline
    hit, their issue #2739). We split it into two acyclic collective-permutes, the forward chain
    [(0,1), ..., (P-2,P-1)] and the wrap edge [(P-1, 0)], and let device 0 select the wrapped value.
    """
    idx = jax.lax.axis_index(axis)
    forward = jax.lax.ppermute(y, axis, [(i, i + 1) for i in range(num_stages - 1)])
    wrapped = jax.lax.ppermute(y, axis, [(num_stages - 1, 0)])
    return jax.tree.map(lambda f, w: jnp.where(idx == 0, w, f), forward, wrapped)


def _validate(layer_params, x, mesh: Mesh, num_microbatches: int, schedule: str, repeats: int, axis: str) -> int:
    if schedule not in SCHEDULES:
        raise ValueError(f"pipeline: schedule={schedule!r} is not one of {SCHEDULES}")
    if axis not in mesh.axis_names:
        raise ValueError(f"pipeline: axis={axis!r} is not a mesh axis {mesh.axis_names}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"pipeline: repeats={repeats!r} must be a positive int")
    if schedule == "gpipe" and repeats != 1:
        raise ValueError(f"pipeline: schedule='gpipe' needs repeats=1, got repeats={repeats} (use 'circular')")
    if not isinstance(num_microbatches, int) or num_microbatches < 1:
        raise ValueError(f"pipeline: num_microbatches={num_microbatches!r} must be a positive int")
    stages = mesh.shape[axis]
    if schedule == "circular" and num_microbatches < stages:
        raise ValueError(
            f"pipeline: schedule='circular' needs num_microbatches >= the {stages} pipeline stages, got "
            f"num_microbatches={num_microbatches} (activations coming back around the ring would have nowhere to go)"
        )
    leaves = jax.tree.leaves(layer_params)
    if not leaves:
        raise ValueError("pipeline: layer_params has no arrays")
    num_layers = leaves[0].shape[0] if leaves[0].ndim else None
    if any(not leaf.ndim or leaf.shape[0] != num_layers for leaf in leaves):
        raise ValueError("pipeline: every layer_params leaf needs the same leading `layers` dim")
    if num_layers % (stages * repeats):
        raise ValueError(
            f"pipeline: layer_params has {num_layers} layers, not divisible by {stages} stages x repeats={repeats}"
        )
    if x.ndim < 1 or x.shape[0] % num_microbatches:
        raise ValueError(
            f"pipeline: x batch size {x.shape[:1]} is not divisible by num_microbatches={num_microbatches}"
        )
    return num_layers


def pipeline(
    stage_fn: Callable[[Any, jax.Array], jax.Array],
    layer_params: Any,
    x: jax.Array,
    *,
    mesh: Mesh,
    num_microbatches: int,
    schedule: str = "gpipe",
    repeats: int = 1,
    axis: str = "pipeline",
    remat: bool = False,
) -> jax.Array:
    """Applies all L stacked layers to x with a pipeline over mesh axis `axis`.

    layer_params: pytree whose leaves have a leading `layers` dim L (stacked per-layer weights).
    stage_fn(chunk_params, h) -> h applies a contiguous chunk of layers (chunk_params leaves have leading dim
    L/(P*repeats)); it is called per microbatch with h: [micro_batch, ...] and must keep h's shape and dtype.
    x: [batch, ...]; batch must divide into num_microbatches. Returns [batch, ...], equal to applying all L
    layers in order. See the module docstring for the schedules. With P == 1 there is no loop: stage_fn runs
    on the whole batch, once per chunk.
    """
    num_layers = _validate(layer_params, x, mesh, num_microbatches, schedule, repeats, axis)
    fn = jax.checkpoint(stage_fn) if remat else stage_fn
    stages, rounds, M = mesh.shape[axis], repeats, num_microbatches
    chunk = num_layers // (stages * rounds)
    # [L, ...] -> [R, P*Lc, ...]: sharding dim 1 over `axis` puts chunk r*P + p on device p.
    grouped = jax.tree.map(lambda w: w.reshape(rounds, stages * chunk, *w.shape[1:]), layer_params)

    if stages == 1:  # no pipeline: run the chunks in order on the whole batch
        for r in range(rounds):
            x = fn(jax.tree.map(lambda w, r=r: w[r], grouped), x)
        return x

    mb = x.shape[0] // M
    xs = jnp.moveaxis(x.reshape(mb, M, *x.shape[1:]), 1, 0)  # [M, mb, ...]; microbatch m = x[m::M]
    steps = M * rounds + stages - 1

    def body(params, xs):  # params: [R, Lc, ...] (this device's chunks); xs: [M, mb, ...]
        stage = jax.lax.axis_index(axis)

        def step(carry, t):
            state, buf = carry
            # Device 0 starts item t: a fresh microbatch for the first M items, later one that came back around.
            fresh = jax.lax.dynamic_index_in_dim(xs, jnp.minimum(t, M - 1), keepdims=False)
            looped = jax.lax.dynamic_index_in_dim(buf, t % M, keepdims=False)
            h = jnp.where(stage == 0, jnp.where(t < M, fresh, looped), state)
            # This device runs item t - stage, in trip (t - stage) // M (clipped in the bubble).
            trip = jnp.clip((t - stage) // M, 0, rounds - 1)
            out = fn(jax.tree.map(lambda w: jax.lax.dynamic_index_in_dim(w, trip, keepdims=False), params), h)
            state = _ring_shift(out, axis, stages)
            # Device 0 just received device P-1's result for item t - (P-1): keep it in the buffer.
            done = t - (stages - 1)
            slot = jnp.maximum(done, 0) % M
            old = jax.lax.dynamic_index_in_dim(buf, slot, keepdims=False)
            new = jnp.where((stage == 0) & (done >= 0), state, old)
            buf = jax.lax.dynamic_update_index_in_dim(buf, new, slot, 0)
            return (state, buf), None

        init = (_to_varying(jnp.zeros_like(xs[0]), axis), _to_varying(jnp.zeros_like(xs), axis))
        (_, buf), _ = jax.lax.scan(step, init, jnp.arange(steps))
        # Device 0's buffer holds the last trip's outputs; share them with every stage.
        return jax.lax.psum(jnp.where(stage == 0, buf, jnp.zeros_like(buf)), axis)

    param_specs = jax.tree.map(lambda _: P(None, axis), grouped)
    ys = jax.shard_map(body, mesh=mesh, in_specs=(param_specs, P()), out_specs=P(), axis_names={axis})(grouped, xs)
    return jnp.moveaxis(ys, 0, 1).reshape(x.shape)
