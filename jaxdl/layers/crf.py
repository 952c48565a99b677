"""Linear-chain conditional random field: log-partition (forward algorithm in log space), sequence scores,
Viterbi decoding, marginals, and transition constraints for BIO tag sets.

Shapes and dtypes (batched, right-padded: `mask[b]` is True on a prefix of length `lengths[b]` and False after):
    emissions    [batch, seq, tags] float  per-position tag scores (e.g. a BiLSTM's logits)
    mask         [batch, seq] bool         real positions
    tags         [batch, seq] int32        gold / decoded tag ids in [0, num_tags); padding ignored
    transitions  [tags, tags] float        score of tag i at t-1 followed by tag j at t
    start, end   [tags] float              score of the first / last tag
A path's score is start[y0] + sum_t emissions[t, y_t] + sum_t transitions[y_{t-1}, y_t] + end[y_last];
log Z = logsumexp over all paths; a length-0 sequence has log Z = score = 0.

Constraints (`bio_constraints`) are boolean masks of allowed transitions / start / end tags; forbidden ones get
`FORBIDDEN` added to their score, so their paths carry ~zero probability and Viterbi never picks them.
Marginals p(y_t = k) are the gradient of log Z with respect to the emissions (`marginals`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# added to the score of a forbidden transition: exp(FORBIDDEN) == 0 in float32, yet sums stay finite (no NaN grads)
FORBIDDEN = -1e9


# ---------------------------------------------------------------------------------------------- tag sets / checks
def tag_ids(tags: Sequence[str], tag_names: Sequence[str]) -> np.ndarray:
    """Tag strings -> int32 ids in `tag_names` order; a tag outside the tag set raises ValueError naming it."""
    index = {t: i for i, t in enumerate(tag_names)}
    out = np.empty(len(tags), np.int32)
    for i, t in enumerate(tags):
        if t not in index:
            raise ValueError(f"tag {t!r} at position {i} is not in the tag set {list(tag_names)}")
        out[i] = index[t]
    return out


def _parse_bio(name: str) -> tuple[str, str]:
    if name == "O":
        return "O", ""
    prefix, sep, kind = name.partition("-")
    if not sep or prefix not in ("B", "I") or not kind:
        raise ValueError(f"tag {name!r} is not a BIO tag (expected 'O', 'B-<type>' or 'I-<type>')")
    return prefix, kind


def bio_constraints(tag_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The IOB2 rules as boolean masks (allowed_transitions [K, K], allowed_start [K], allowed_end [K]): an
    `I-X` may only follow `B-X` or `I-X` and may not start a sequence; everything else is allowed.
    A name that is not 'O', 'B-X' or 'I-X' raises ValueError naming it."""
    parsed = [_parse_bio(n) for n in tag_names]
    k = len(parsed)
    allowed = np.ones((k, k), bool)
    for j, (pj, kj) in enumerate(parsed):
        if pj == "I":
            for i, (pi, ki) in enumerate(parsed):
                allowed[i, j] = pi in ("B", "I") and ki == kj
    start = np.array([p != "I" for p, _ in parsed])
    return allowed, start, np.ones(k, bool)


def invalid_bio(tags: Sequence[str]) -> bool:
    """True if the IOB2 sequence breaks the rules (an `I-X` not after `B-X`/`I-X`)."""
    prev = ("O", "")
    for t in tags:
        p, kind = _parse_bio(t)
        if p == "I" and not (prev[0] in ("B", "I") and prev[1] == kind):
            return True
        prev = (p, kind)
    return False


def check_tags(tags, num_tags: int, mask=None) -> None:
    """Raises ValueError naming the first tag id outside [0, num_tags) at a real position. Checked only on concrete
    arrays (inside jit the ids cannot be inspected: validate data before training, as the tagging builders do)."""
    if isinstance(tags, jax.core.Tracer) or isinstance(mask, jax.core.Tracer):
        return
    t = np.asarray(tags)
    real = np.ones(t.shape, bool) if mask is None else np.asarray(mask, bool)
    bad = real & ((t < 0) | (t >= num_tags))
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"tag id {int(t[pos])} at position {pos} is outside the tag set of {num_tags} tags [0, {num_tags})"
        )


def _check_shapes(emissions, mask, transitions, start, end) -> None:
    if emissions.ndim != 3:
        raise ValueError(f"emissions must be [batch, seq, tags], got shape {emissions.shape}")
    b, t, k = emissions.shape
    if mask.shape != (b, t):
        raise ValueError(f"mask must be [batch, seq] = {(b, t)}, got shape {mask.shape}")
    if transitions.shape != (k, k) or start.shape != (k,) or end.shape != (k,):
        raise ValueError(
            f"transitions/start/end must be [{k}, {k}]/[{k}]/[{k}] for {k} tags, got "
            f"{transitions.shape}/{start.shape}/{end.shape}"
        )


# ---------------------------------------------------------------------------------------------- functional core
def log_partition(emissions, mask, transitions, start, end) -> jax.Array:
    """log Z [batch] float32 by the forward algorithm (lax.scan over time, logsumexp in log space)."""
    _check_shapes(emissions, mask, transitions, start, end)
    em = emissions.astype(jnp.float32)
    mask = mask.astype(bool)
    alpha0 = start[None, :] + em[:, 0]  # [B, K]

    def step(alpha, xs):
        e_t, m_t = xs  # [B, K], [B]
        nxt = jax.nn.logsumexp(alpha[:, :, None] + transitions[None], axis=1) + e_t
        return jnp.where(m_t[:, None], nxt, alpha), None

    alpha, _ = jax.lax.scan(step, alpha0, (jnp.swapaxes(em[:, 1:], 0, 1), jnp.swapaxes(mask[:, 1:], 0, 1)))
    return jnp.where(mask[:, 0], jax.nn.logsumexp(alpha + end[None], axis=-1), 0.0)


def sequence_score(emissions, tags, mask, transitions, start, end) -> jax.Array:
    """Score [batch] float32 of the given tag paths (padding ignored). Concrete ids outside the tag set raise."""
    _check_shapes(emissions, mask, transitions, start, end)
    check_tags(tags, emissions.shape[-1], mask)
    em = emissions.astype(jnp.float32)
    mask = mask.astype(bool)
    tags = jnp.clip(tags.astype(jnp.int32), 0, em.shape[-1] - 1)
    emit = jnp.take_along_axis(em, tags[..., None], axis=-1)[..., 0]  # [B, T]
    trans = transitions[tags[:, :-1], tags[:, 1:]]  # [B, T-1]
    lengths = mask.sum(-1)
    last = jnp.take_along_axis(tags, jnp.maximum(lengths - 1, 0)[:, None], axis=1)[:, 0]
    score = (emit * mask).sum(-1) + (trans * mask[:, 1:]).sum(-1) + start[tags[:, 0]] + end[last]
    return jnp.where(lengths > 0, score, 0.0)


def log_likelihood(emissions, tags, mask, transitions, start, end) -> jax.Array:
    """log p(tags | emissions) [batch] = score(tags) - log Z."""
    return sequence_score(emissions, tags, mask, transitions, start, end) - log_partition(
        emissions, mask, transitions, start, end
    )


def marginals(emissions, mask, transitions, start, end) -> jax.Array:
    """p(y_t = k | x) [batch, seq, tags] float32, the gradient of sum_b log Z_b w.r.t. the emissions (0 on padding)."""

    def total(em):
        return log_partition(em, mask, transitions, start, end).sum()

    return jax.grad(total)(emissions.astype(jnp.float32))


def viterbi(emissions, mask, transitions, start, end) -> tuple[jax.Array, jax.Array]:
    """Best paths: (tags [batch, seq] int32 with 0 on padding, their scores [batch] float32)."""
    _check_shapes(emissions, mask, transitions, start, end)
    em = emissions.astype(jnp.float32)
    mask = mask.astype(bool)
    b, _, k = em.shape
    delta0 = start[None, :] + em[:, 0]
    keep = jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32), (b, k))

    def step(delta, xs):
        e_t, m_t = xs
        cand = delta[:, :, None] + transitions[None]  # [B, prev, next]
        best_prev = jnp.argmax(cand, axis=1).astype(jnp.int32)
        nxt = jnp.max(cand, axis=1) + e_t
        # on padding the path stays put: the back-pointer of tag k is k itself
        return jnp.where(m_t[:, None], nxt, delta), jnp.where(m_t[:, None], best_prev, keep)

    delta, back = jax.lax.scan(step, delta0, (jnp.swapaxes(em[:, 1:], 0, 1), jnp.swapaxes(mask[:, 1:], 0, 1)))
    final = delta + end[None]
    last = jnp.argmax(final, axis=-1).astype(jnp.int32)
    score = jnp.max(final, axis=-1)

    def backtrack(tag, bp):  # bp [B, K]: best previous tag for each tag at time t
        prev = jnp.take_along_axis(bp, tag[:, None], axis=1)[:, 0]
        return prev, tag

    first, rest = jax.lax.scan(backtrack, last, back, reverse=True)
    path = jnp.concatenate([first[None], rest], axis=0).swapaxes(0, 1)  # [B, T]
    return jnp.where(mask, path, 0), jnp.where(mask[:, 0], score, 0.0)


# ---------------------------------------------------------------------------------------------- the layer
class CRF(nnx.Module):
    """Learned transition/start/end scores over `num_tags` tags (float32 params, zero init), with optional fixed
    constraints: `constraints="bio"` forbids the IOB2-invalid transitions of `tag_names` (see `bio_constraints`).

    `crf.nll(emissions, tags, mask)` -> [batch] negative log-likelihood; `crf.decode(emissions, mask)` -> Viterbi
    tags [batch, seq] int32; `crf.marginals(emissions, mask)` -> [batch, seq, tags]."""

    def __init__(
        self,
        num_tags: int,
        *,
        tag_names: Sequence[str] | None = None,
        constraints: str | None = None,
        rngs: nnx.Rngs | None = None,
    ):
        del rngs  # zero init: the emissions carry the signal at the start of training
        if tag_names is not None and len(tag_names) != num_tags:
            raise ValueError(f"tag_names has {len(tag_names)} names for num_tags={num_tags}")
        self.num_tags = num_tags
        self.transitions = nnx.Param(jnp.zeros((num_tags, num_tags), jnp.float32))
        self.start = nnx.Param(jnp.zeros((num_tags,), jnp.float32))
        self.end = nnx.Param(jnp.zeros((num_tags,), jnp.float32))
        if constraints is None:
            allowed, a_start, a_end = (
                np.ones((num_tags, num_tags), bool),
                np.ones(num_tags, bool),
                np.ones(num_tags, bool),
            )
        elif constraints == "bio":
            if tag_names is None:
                raise ValueError("constraints='bio' needs tag_names")
            allowed, a_start, a_end = bio_constraints(tag_names)
        else:
            raise ValueError(f"constraints={constraints!r} is not one of None, 'bio'")
        # constants, not parameters: 0 where allowed, FORBIDDEN where not
        self.penalty = nnx.Variable(jnp.where(jnp.asarray(allowed), 0.0, FORBIDDEN).astype(jnp.float32))
        self.start_penalty = nnx.Variable(jnp.where(jnp.asarray(a_start), 0.0, FORBIDDEN).astype(jnp.float32))
        self.end_penalty = nnx.Variable(jnp.where(jnp.asarray(a_end), 0.0, FORBIDDEN).astype(jnp.float32))

    def potentials(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(transitions, start, end) with the constraint penalties added."""
        return (
            self.transitions[...] + self.penalty[...],
            self.start[...] + self.start_penalty[...],
            self.end[...] + self.end_penalty[...],
        )

    def nll(self, emissions, tags, mask) -> jax.Array:
        return -log_likelihood(emissions, tags, mask, *self.potentials())

    def log_partition(self, emissions, mask) -> jax.Array:
        return log_partition(emissions, mask, *self.potentials())

    def decode(self, emissions, mask) -> jax.Array:
        return viterbi(emissions, mask, *self.potentials())[0]

    def marginals(self, emissions, mask) -> jax.Array:
        return marginals(emissions, mask, *self.potentials())
