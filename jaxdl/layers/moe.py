"""Hard mixture-of-experts feed-forward block (GShard / Switch Transformer) with expert parallelism.

`MoeMlp` maps [batch, length, embed] -> [batch, length, embed]: a router picks `top_k` of `num_experts` expert
MLPs (embed -> mlp -> embed, GELU between, no biases) per token, each expert processes at most `capacity` tokens
per group, and the outputs are summed with the gate weights.

Routing (identical in both execution paths):
- Router: logits = x @ router_kernel [embed, expert] in fp32 (HIGHEST precision), softmax in fp32.
- Top-k of the probabilities, ties to the lower expert index (computed as k argmax rounds, which stay sharded like
  the batch where XLA would all-gather a TopK). Gates: for top_k > 1 the k chosen probabilities renormalized to
  sum to 1 (GShard/Mixtral); for top_k == 1 the raw probability (Switch; renormalizing would make the gate a
  constant 1 and cut the router off the task gradient).
- Groups: the tokens, flattened row-major over [batch, length], are split into `num_groups` contiguous groups of
  S = tokens / num_groups; routing capacity and priority are per group. Default num_groups: the number of
  devices the batch is split over in the active `rules.activation_rules` context (lcm with the expert-parallel
  size), i.e. one group per device shard as in GShard/DeepSpeed, so routing never crosses devices; 1 outside a
  context. A 1-device run with the same `num_groups` gives the same numbers as the sharded run.
- Capacity per expert per group: C = ceil(capacity_factor * S * top_k / num_experts) (at most S);
  capacity_factor None or 0 means unlimited (C = S, nothing is dropped).
- Priority: first come, first served in the order (choice rank, token): every token's top-1 assignment is placed
  before any top-2 assignment (GShard), and within a rank earlier tokens (in the flattened order) come first.
  Assignments past the capacity are dropped and contribute 0 (the surviving assignment keeps its gate, it is not
  renormalized again); a token with all assignments dropped gets output 0 (the enclosing block's residual carries
  it).

Execution paths (`impl`):
- "einsum": one-hot dispatch [G, S, E, C] and combine tensors, `einsum` into per-expert slots [E, G, C, embed],
  the expert FFN as batched matmuls, `einsum` back. Works on any mesh; activations are pinned with
  `rules.constrain` (experts over the logical `expert` axis, groups over `batch`) and XLA inserts collectives.
- "all_to_all" (expert parallelism): when the logical axis `expert` maps to mesh axes of size E_p > 1, the same
  dispatch/FFN/combine runs inside a partial-manual `jax.shard_map`: each device dispatches its own groups into
  [E, g, C, embed], `all_to_all` over the expert axes sends every expert's slots to the device holding that
  expert's weights, the FFN runs on the local [E/E_p, ...] weights, and a second `all_to_all` brings the results
  back for the combine. The batch should be sharded over the expert axis too (the data dimension doubles as the
  expert dimension; rules like `("batch", ("data", "expert")), ("expert", "expert")`). Manual axes: the batch's
  mesh axes when they include the expert axes and the groups split evenly over them (then nothing but the
  all_to_alls and the data-parallel gradient sums cross devices), else the expert axes alone (exact as well, but
  XLA first moves groups between devices); the remaining axes (e.g. `tensor` for `mlp`) stay automatic.
- "auto": "all_to_all" when E_p > 1, else "einsum".

Auxiliary outputs (fp32 scalars, over all tokens of the call):
- load_balance_loss = num_experts * sum_e f_e * P_e (Switch Transformer), f_e = fraction of the tokens * top_k
  assignments routed to e (before capacity drops), P_e = mean router probability of e. 1 when balanced.
- router_z_loss = mean over tokens of logsumexp(logits)^2 (ST-MoE).
- dropped_fraction = fraction of the tokens * top_k assignments dropped for capacity.
- max_expert_load = num_experts * max_e f_e (1 when balanced, num_experts when everything goes to one expert).
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import PartitionSpec

from jaxdl.layers.dtypes import to_dtype
from jaxdl.parallel import rules as rules_lib

IMPLS = ("auto", "einsum", "all_to_all")


class Routing(NamedTuple):
    """Per-group routing decisions. G groups, S tokens per group, K = top_k, E experts, C capacity."""

    dispatch: jax.Array  # [G, S, E, C] fp32 0/1: token s goes to slot c of expert e
    combine: jax.Array  # [G, S, E, C] fp32: dispatch * gate
    expert_index: jax.Array  # [G, S, K] int32 chosen experts, best first
    gates: jax.Array  # [G, S, K] fp32 gate of each choice (also for dropped ones)
    position: jax.Array  # [G, S, K] int32 slot in the expert's buffer (>= C: dropped)
    kept: jax.Array  # [G, S, K] bool
    aux: dict  # fp32 scalars, see the module docstring


def capacity(tokens_per_group: int, num_experts: int, top_k: int, capacity_factor: float | None) -> int:
    """Slots per expert per group: ceil(capacity_factor * S * top_k / E), at most S; unlimited (S) for None/0."""
    if not capacity_factor:
        return tokens_per_group
    return max(1, min(tokens_per_group, math.ceil(capacity_factor * tokens_per_group * top_k / num_experts)))


def _top_k(x: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """Like `jax.lax.top_k` over the last axis (ties to the lower index), as k rounds of argmax: XLA's SPMD
    partitioner all-gathers the batch dimensions of a TopK, whereas argmax stays local to each device."""
    values, indices = [], []
    for _ in range(k):
        i = jnp.argmax(x, axis=-1)
        values.append(jnp.take_along_axis(x, i[..., None], axis=-1)[..., 0])
        indices.append(i.astype(jnp.int32))
        x = jnp.where(jax.nn.one_hot(i, x.shape[-1], dtype=jnp.bool_), -jnp.inf, x)
    return jnp.stack(values, axis=-1), jnp.stack(indices, axis=-1)


def route(logits: jax.Array, top_k: int, capacity: int) -> Routing:
    """Top-k routing with per-group capacity. logits: [G, S, E] fp32 router logits."""
    g, s, e = logits.shape
    logits = logits.astype(jnp.float32)
    probs = jax.nn.softmax(logits, axis=-1)
    top_p, index = _top_k(probs, top_k)  # [G, S, K]
    gates = top_p / jnp.sum(top_p, axis=-1, keepdims=True) if top_k > 1 else top_p
    choice = jax.nn.one_hot(index, e, dtype=jnp.int32)  # [G, S, K, E]
    # priority order within a group: rank-major (all top-1 choices first), then token order
    ordered = choice.transpose(0, 2, 1, 3).reshape(g, top_k * s, e)
    position = jnp.sum((jnp.cumsum(ordered, axis=1) - 1) * ordered, axis=-1)  # [G, K*S]
    position = position.reshape(g, top_k, s).transpose(0, 2, 1)  # [G, S, K]
    kept = position < capacity
    slot = jax.nn.one_hot(jnp.where(kept, position, capacity), capacity, dtype=jnp.float32)  # dropped: all 0
    # the K choices of a token are distinct experts, so these sums have at most one nonzero term (exact)
    choice_f = choice.astype(jnp.float32)
    dispatch = jnp.sum(choice_f[..., :, None] * slot[..., None, :], axis=2)  # [G, S, E, C]
    combine = jnp.sum((choice_f * gates[..., None])[..., :, None] * slot[..., None, :], axis=2)

    assignments = g * s * top_k
    fraction = jnp.sum(choice, axis=(0, 1, 2)).astype(jnp.float32) / assignments  # f_e
    mean_prob = jnp.mean(probs, axis=(0, 1))  # P_e
    z = jax.nn.logsumexp(logits, axis=-1)
    aux = dict(
        load_balance_loss=e * jnp.sum(fraction * mean_prob),
        router_z_loss=jnp.mean(z**2),
        dropped_fraction=(assignments - jnp.sum(kept, dtype=jnp.int32)).astype(jnp.float32) / assignments,
        max_expert_load=e * jnp.max(fraction),
    )
    return Routing(dispatch, combine, index, gates, position, kept, aux)


def _expert_ffn(xin: jax.Array, wi: jax.Array, wo: jax.Array) -> jax.Array:
    """xin [E, ..., embed] through each expert's MLP: wi [E, embed, mlp], wo [E, mlp, embed] (cast to xin's dtype)."""
    h = nnx.gelu(jnp.einsum("e...d,edm->e...m", xin, wi.astype(xin.dtype)))
    return jnp.einsum("e...m,emd->e...d", h, wo.astype(xin.dtype))


def _vary(x: jax.Array, axes: tuple[str, ...]) -> jax.Array:
    if not axes:
        return x
    pcast = getattr(jax.lax, "pcast", None)
    return pcast(x, axes, to="varying") if pcast is not None else jax.lax.pvary(x, axes)


def _spec_entry(axes: tuple[str, ...]):
    return axes[0] if len(axes) == 1 else axes


class MoeMlp(nnx.Module):
    """Mixture-of-experts MLP: [batch, length, embed] -> ([batch, length, embed], aux dict of fp32 scalars).

    Parameters: router kernel [embed, expert] (logical ("embed", None)), wi [expert, embed, mlp]
    (("expert", "embed", "mlp")), wo [expert, mlp, embed] (("expert", "mlp", "embed")). See the module docstring
    for routing, groups, capacity, priority and the two execution paths.
    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        *,
        num_experts: int,
        top_k: int = 2,
        capacity_factor: float | None = 1.25,
        num_groups: int | None = None,
        impl: str = "auto",
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        if num_experts < 1:
            raise ValueError(f"MoeMlp: num_experts={num_experts} must be >= 1")
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"MoeMlp: top_k={top_k} must be between 1 and num_experts={num_experts}")
        if capacity_factor is not None and capacity_factor < 0:
            raise ValueError(f"MoeMlp: capacity_factor={capacity_factor} must be >= 0 (None or 0: unlimited)")
        if num_groups is not None and num_groups < 1:
            raise ValueError(f"MoeMlp: num_groups={num_groups} must be >= 1 (or None: one per batch shard)")
        if impl not in IMPLS:
            raise ValueError(f"MoeMlp: impl={impl!r} is not one of {IMPLS}")
        self.num_experts, self.top_k, self.capacity_factor = num_experts, top_k, capacity_factor
        self.num_groups, self.impl = num_groups, impl
        self.dtype = to_dtype(dtype)
        pdt = to_dtype(param_dtype)
        router_init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("embed", None))
        self.router = nnx.Param(router_init(rngs.params(), (dim, num_experts), pdt))
        expert_init = nnx.initializers.lecun_normal(in_axis=-2, out_axis=-1, batch_axis=(0,))
        wi_init = nnx.with_partitioning(expert_init, ("expert", "embed", "mlp"))
        wo_init = nnx.with_partitioning(expert_init, ("expert", "mlp", "embed"))
        self.wi = nnx.Param(wi_init(rngs.params(), (num_experts, dim, hidden), pdt))
        self.wo = nnx.Param(wo_init(rngs.params(), (num_experts, hidden, dim), pdt))

    # ------------------------------------------------------------------------------------------ helpers
    def _expert_parallel(self) -> tuple[tuple[str, ...], int]:
        """(mesh axes of logical `expert`, their total size) in the active context; checks divisibility."""
        axes, size = rules_lib.mesh_axes("expert"), rules_lib.mesh_axis_size("expert")
        if size > 1 and self.num_experts % size:
            raise ValueError(
                f"MoeMlp: num_experts={self.num_experts} is not divisible by the {size} devices of the expert "
                f"mesh axes {axes}"
            )
        return axes, size

    def groups(self, tokens: int) -> int:
        """The number of routing groups for `tokens` tokens in the active context (see the module docstring)."""
        _, ep = self._expert_parallel()
        g = self.num_groups
        if g is None:
            g = math.lcm(rules_lib.mesh_axis_size("batch"), ep)
            if tokens % g:
                raise ValueError(
                    f"MoeMlp: {tokens} tokens do not split into the default num_groups={g} (one per batch shard); "
                    f"pass num_groups explicitly"
                )
        if tokens % g:
            raise ValueError(f"MoeMlp: {tokens} tokens (batch * length) are not divisible by num_groups={g}")
        if ep > 1 and self.impl != "einsum" and g % ep:
            raise ValueError(
                f"MoeMlp: num_groups={g} must be divisible by the {ep} devices of the expert mesh axes (each "
                f"device dispatches whole groups)"
            )
        return g

    @staticmethod
    def _group_axis(g: int) -> str | None:
        """Logical name for the group dimension: `batch` when the groups split evenly over its devices."""
        return "batch" if g % rules_lib.mesh_axis_size("batch") == 0 else None

    def route(self, x: jax.Array) -> Routing:
        """Routing decisions for x [batch, length, embed] (groups as in `__call__`)."""
        b, length, d = x.shape
        g = self.groups(b * length)
        c = capacity((b * length) // g, self.num_experts, self.top_k, self.capacity_factor)
        xg = rules_lib.constrain(x.reshape(g, (b * length) // g, d), (self._group_axis(g), None, "embed"))
        logits = jnp.einsum(
            "gsd,de->gse",
            xg.astype(jnp.float32),
            self.router[...].astype(jnp.float32),
            precision=jax.lax.Precision.HIGHEST,
        )
        return route(logits, self.top_k, c)

    # ------------------------------------------------------------------------------------------ forward
    def __call__(self, x: jax.Array, *, train: bool = False) -> tuple[jax.Array, dict]:
        """x [batch, length, embed] -> (y [batch, length, embed] in `dtype`, aux dict of fp32 scalars).
        `train` is accepted for symmetry with the other blocks (the routing is deterministic)."""
        del train
        b, length, d = x.shape
        axes, ep = self._expert_parallel()
        impl = self.impl if self.impl != "auto" else ("all_to_all" if ep > 1 else "einsum")
        if impl == "all_to_all" and ep == 1:
            raise ValueError(
                "MoeMlp: impl='all_to_all' needs an active sharding context whose logical 'expert' axis maps to "
                "mesh axes of size > 1"
            )
        r = self.route(x)
        g, s = r.dispatch.shape[:2]
        dt = self.dtype
        xg = rules_lib.constrain(x.reshape(g, s, d).astype(dt), (self._group_axis(g), None, "embed"))
        dispatch, combine = r.dispatch.astype(dt), r.combine.astype(dt)
        # the weights enter the paths in param_dtype and are cast where used, so that their gradients are summed
        # over the data-parallel devices in param_dtype
        wi, wo = self.wi[...], self.wo[...]
        if impl == "einsum":
            y = self._einsum_path(xg, dispatch, combine, wi, wo)
        else:
            y = self._all_to_all_path(xg, dispatch, combine, wi, wo, axes)
        return y.reshape(b, length, d), r.aux

    def _einsum_path(self, xg, dispatch, combine, wi, wo):
        slots = ("expert", self._group_axis(xg.shape[0]), None, "embed")
        xin = rules_lib.constrain(jnp.einsum("gsec,gsd->egcd", dispatch, xg), slots)  # [E, G, C, embed]
        out = rules_lib.constrain(_expert_ffn(xin, wi, wo), slots)
        return jnp.einsum("gsec,egcd->gsd", combine, out)

    @staticmethod
    def _all_to_all_path(xg, dispatch, combine, wi, wo, axes):
        mesh, _ = rules_lib.active()
        g = xg.shape[0]
        # Manual axes: when the groups already lie split over the batch mesh axes and those include the expert
        # axes (batch over ("data", "expert")), all batch axes go manual and every device keeps its own groups.
        # Leaving them automatic would be exact too, but XLA's partitioner replicates the auto-sharded dims of an
        # all_to_all operand (an all-gather over `data` and the expert FFN computed twice), so only the other axes
        # (tensor, ...) stay automatic. Otherwise only the expert axes are manual and XLA moves the groups first.
        batch_axes = rules_lib.mesh_axes("batch")
        if set(axes) <= set(batch_axes) and g % rules_lib.mesh_axis_size("batch") == 0:
            manual = batch_axes
        else:
            manual = axes
        name, others = _spec_entry(axes), tuple(a for a in manual if a not in axes)

        def local(xg, dispatch, combine, wi, wo):
            # mark the weights as varying over the other manual axes while still in param_dtype, so the transpose
            # sums their gradients over those (data-parallel) devices in param_dtype, not in the compute dtype
            wi, wo = _vary(wi, others), _vary(wo, others)
            # xg [g_local, S, embed]; dispatch/combine [g_local, S, E, C]; wi/wo: this device's E / ep experts
            xin = jnp.einsum("gsec,gsd->egcd", dispatch, xg)  # [E, g_local, C, embed]
            xin = jax.lax.all_to_all(xin, name, 0, 1, tiled=True)  # [E / ep, g_local * ep, C, embed]
            out = _expert_ffn(xin, wi, wo)
            out = jax.lax.all_to_all(out, name, 1, 0, tiled=True)  # [E, g_local, C, embed]
            return jnp.einsum("gsec,egcd->gsd", combine, out)

        groups_spec = PartitionSpec(_spec_entry(manual))
        expert_spec = PartitionSpec(_spec_entry(axes))
        return jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(groups_spec, groups_spec, groups_spec, expert_spec, expert_spec),
            out_specs=groups_spec,
            axis_names=set(manual),
        )(xg, dispatch, combine, wi, wo)
