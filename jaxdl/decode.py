"""Jitted autoregressive decoding against a generic step function: greedy / temperature / top-k / top-p sampling
(`generate`) and beam search with the GNMT length penalty (`beam_search`).

The step-function interface (what a model provides; `jaxdl.models.language.gpt.Model.decode_step` is one, a seq2seq
decoder whose cache also holds its encoder outputs is another)::

    step_fn(params, tokens, cache) -> (logits, cache)

- `params`: any pytree, passed through `jax.jit` as an argument (model weights; not baked into the program).
- `tokens`: int32 [rows, t], the next `t` tokens of every row (t = prompt length for the prefill, then 1).
- `cache`: any pytree of arrays holding the decoder state for `rows` rows. Every array leaf of rank > `batch_axis`
  has its rows on axis `batch_axis` (1 for layer-stacked caches `[layers, rows, ...]`, 0 for `[rows, ...]`);
  leaves of lower rank (e.g. a shared write index) are the same for every row. Beam search reorders and
  replicates rows by gathering on that axis; pass `reorder_cache` for a cache laid out otherwise.
- `logits`: float [rows, t, vocab], the next-token logits after each of the `t` tokens.

`step_fn` must be hashable (it is a static argument of the jitted loops); `module_step(module)` wraps an NNX
module's method as one, together with the module's state as `params`. The caller allocates the cache with room
for prompt + max_new_tokens - 1 positions (the last generated token is never fed back).

`greedy_decode` / `beam_decode` translate with any encoder-decoder that has `init_cache(source, max_len)`,
`decode_step`, `CACHE_BATCH_AXIS` and `pad_id` / `bos_id` / `eos_id` (`jaxdl.models.language.seq2seq`, `lstm_seq2seq`).
"""

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

StepFn = Callable[[Any, jax.Array, Any], tuple[jax.Array, Any]]
NEG_INF = -1.0e9  # finite "minus infinity" for scores, so -inf - -inf never makes a NaN


@dataclasses.dataclass(frozen=True)
class ModuleStep:
    """`step_fn(state, tokens, cache)` calling `nnx.merge(graphdef, state).<method>(tokens, cache)`; hashable."""

    graphdef: Any
    method: str = "decode_step"

    def __call__(self, state, tokens, cache):
        return getattr(nnx.merge(self.graphdef, state), self.method)(tokens, cache)


def module_step(module: nnx.Module, method: str = "decode_step") -> tuple[ModuleStep, Any]:
    """(step_fn, params) for an NNX module whose `method(tokens, cache)` follows the step-function interface."""
    graphdef, state = nnx.split(module)
    return ModuleStep(graphdef, method), state


def take_rows(cache: Any, rows: jax.Array, batch_axis: int = 1) -> Any:
    """The cache with its rows replaced by rows `rows` (int [n]; n may differ from the current row count)."""
    return jax.tree.map(lambda x: jnp.take(x, rows, axis=batch_axis) if x.ndim > batch_axis else x, cache)


# ----------------------------------------------------------------------------------------------- sampling
def top_k_mask(logits: jax.Array, k: int) -> jax.Array:
    """Bool mask of the `k` largest logits on the last axis (ties at the k-th value are all kept)."""
    if k < 1 or k > logits.shape[-1]:
        raise ValueError(f"top_k={k}: expected 1 <= top_k <= vocab size {logits.shape[-1]}")
    kth = jax.lax.top_k(logits, k)[0][..., -1:]
    return logits >= kth


def top_p_mask(logits: jax.Array, p: float) -> jax.Array:
    """Bool mask of the nucleus: the smallest set of most probable tokens whose probability mass is >= p (a token
    is kept iff the mass of the tokens strictly more probable than it, in sorted order, is < p)."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p={p}: expected 0 < top_p <= 1")
    order = jnp.argsort(-logits, axis=-1)
    probs = jax.nn.softmax(jnp.take_along_axis(logits, order, axis=-1).astype(jnp.float32), axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    keep_sorted = mass_before < p
    return jnp.put_along_axis(jnp.zeros_like(keep_sorted), order, keep_sorted, axis=-1, inplace=False)


def sample_logits(
    logits: jax.Array, key: jax.Array | None, *, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0
) -> jax.Array:
    """logits [rows, vocab] -> int32 tokens [rows]. temperature 0 = greedy (argmax; key unused); otherwise a draw
    from softmax(logits / temperature) restricted to the top_k tokens (0 = all) and to the top_p nucleus."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature}: expected >= 0 (0 = greedy)")
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    if key is None:
        raise ValueError("sample_logits: sampling (temperature > 0) needs a PRNG key")
    logits = logits.astype(jnp.float32) / temperature
    if top_k:
        logits = jnp.where(top_k_mask(logits, top_k), logits, -jnp.inf)
    if top_p < 1.0:
        logits = jnp.where(top_p_mask(logits, top_p), logits, -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def _check(prompt: jax.Array, max_new_tokens: int) -> None:
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError(f"prompt: expected int tokens [batch, length >= 1], got shape {tuple(prompt.shape)}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens}: expected >= 1")


@partial(jax.jit, static_argnames=("step_fn", "max_new_tokens", "temperature", "top_k", "top_p", "eos_id", "pad_id"))
def generate(
    step_fn: StepFn,
    params: Any,
    prompt: jax.Array,
    cache: Any,
    *,
    max_new_tokens: int,
    key: jax.Array | None = None,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    pad_id: int = 0,
) -> jax.Array:
    """prompt int [batch, P] -> the generated tokens int32 [batch, max_new_tokens] (the prompt not included).

    A row stops after emitting `eos_id` (the eos is kept, later slots hold `pad_id`; the step function is fed
    token 0 for it from then on); the loop (a `lax.while_loop`) ends when every row has stopped or after
    max_new_tokens tokens. `key` is required when temperature > 0 (token i is drawn with fold_in(key, i))."""
    _check(prompt, max_new_tokens)
    batch = prompt.shape[0]
    if temperature > 0 and key is None:
        raise ValueError(f"generate: temperature={temperature} samples and needs a PRNG `key`")
    logits, cache = step_fn(params, prompt.astype(jnp.int32), cache)
    key = jax.random.key(0) if key is None else key  # unused by greedy decoding
    out = jnp.full((batch, max_new_tokens), pad_id, jnp.int32)
    done = jnp.zeros((batch,), bool)

    def emit(i, logits, out, done):
        tok = sample_logits(logits, jax.random.fold_in(key, i), temperature=temperature, top_k=top_k, top_p=top_p)
        tok = jnp.where(done, pad_id, tok)
        out = jax.lax.dynamic_update_slice(out, tok[:, None], (0, i))
        if eos_id is not None:
            done = done | (tok == eos_id)
        return tok, out, done

    def body(state):  # params ride in the carry: NNX modules must be rebuilt from values of the current trace
        i, logits, cache, out, done, params = state
        tok, out, done = emit(i, logits, out, done)
        feed = jnp.where(done, 0, tok)  # stopped rows are fed token 0 (pad_id may lie outside the vocabulary)
        logits, cache = step_fn(params, feed[:, None], cache)
        return i + 1, logits[:, -1], cache, out, done, params

    cond = lambda s: (s[0] < max_new_tokens - 1) & ~jnp.all(s[4])
    init = (jnp.int32(0), logits[:, -1], cache, out, done, params)
    i, logits, _, out, done, _ = jax.lax.while_loop(cond, body, init)
    return emit(i, logits, out, done)[1]  # the last token (all pad when every row had stopped)


def length_penalty(length: jax.Array, alpha: float) -> jax.Array:
    """GNMT (Wu et al. 2016): ((5 + length) / 6) ** alpha; a sequence's score is its log-probability divided by it."""
    return ((5.0 + length.astype(jnp.float32)) / 6.0) ** alpha


@partial(
    jax.jit,
    static_argnames=(
        "step_fn",
        "beam_size",
        "max_new_tokens",
        "eos_id",
        "alpha",
        "pad_id",
        "batch_axis",
        "reorder_cache",
    ),
)
def beam_search(
    step_fn: StepFn,
    params: Any,
    prompt: jax.Array,
    cache: Any,
    *,
    beam_size: int,
    max_new_tokens: int,
    eos_id: int | None = None,
    alpha: float = 0.6,
    pad_id: int = 0,
    batch_axis: int = 1,
    reorder_cache: Callable[[Any, jax.Array], Any] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """prompt [batch, P], cache for `batch` rows -> (sequences int32 [batch, beam, max_new_tokens], scores
    [batch, beam]), best first. A hypothesis is complete when it emits `eos_id` (kept; pad after) or reaches
    max_new_tokens; its score is log p(tokens | prompt) / length_penalty(number of tokens, alpha). Rows of the
    cache are replicated to batch * beam after the prefill and reordered every step (`take_rows` on `batch_axis`,
    or `reorder_cache(cache, rows)`). Stops early once no alive hypothesis can beat the beam-th finished one."""
    _check(prompt, max_new_tokens)
    batch, k = prompt.shape[0], beam_size
    if k < 1:
        raise ValueError(f"beam_size={beam_size}: expected >= 1")
    reorder = reorder_cache or partial(take_rows, batch_axis=batch_axis)
    logits, cache = step_fn(params, prompt.astype(jnp.int32), cache)
    vocab = logits.shape[-1]
    if 2 * k > (k * vocab):
        raise ValueError(f"beam_size={beam_size}: too large for vocab size {vocab}")
    cache = reorder(cache, jnp.repeat(jnp.arange(batch), k))
    logits = jnp.repeat(logits[:, -1], k, axis=0)
    lp_max = length_penalty(jnp.arange(1, max_new_tokens + 1), alpha).max()  # > 0 for any alpha
    state = dict(
        i=jnp.int32(0),
        logits=logits,
        cache=cache,
        alive=jnp.full((batch, k, max_new_tokens), pad_id, jnp.int32),
        alive_logp=jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1), jnp.float32), (batch, 1)),  # one live beam
        fin=jnp.full((batch, k, max_new_tokens), pad_id, jnp.int32),
        fin_score=jnp.full((batch, k), NEG_INF, jnp.float32),
        params=params,  # in the carry: NNX modules must be rebuilt from values of the current trace
    )

    def body(s):
        i = s["i"]
        logp = jax.nn.log_softmax(s["logits"].astype(jnp.float32), axis=-1).reshape(batch, k, vocab)
        cand = (s["alive_logp"][..., None] + logp).reshape(batch, k * vocab)
        top_logp, top_idx = jax.lax.top_k(cand, 2 * k)  # enough for k non-eos candidates
        parent, token = top_idx // vocab, (top_idx % vocab).astype(jnp.int32)
        seqs = jnp.take_along_axis(s["alive"], parent[..., None], axis=1)
        seqs = jax.lax.dynamic_update_slice(seqs, token[..., None], (0, 0, i))
        is_eos = token == eos_id if eos_id is not None else jnp.zeros_like(token, bool)
        last = i == max_new_tokens - 1
        # finished: candidates that emitted eos, or every candidate at the last step
        new_fin_score = jnp.where(is_eos | last, top_logp / length_penalty(i + 1, alpha), NEG_INF)
        new_fin_score = jnp.where(top_logp <= NEG_INF / 2, NEG_INF, new_fin_score)  # from a dead beam
        fin_score, fin_idx = jax.lax.top_k(jnp.concatenate([s["fin_score"], new_fin_score], 1), k)
        fin = jnp.take_along_axis(jnp.concatenate([s["fin"], seqs], 1), fin_idx[..., None], axis=1)
        # alive: the k best candidates that did not emit eos
        alive_logp, alive_idx = jax.lax.top_k(jnp.where(is_eos, NEG_INF, top_logp), k)
        alive = jnp.take_along_axis(seqs, alive_idx[..., None], axis=1)
        alive_tok = jnp.take_along_axis(token, alive_idx, axis=1)
        rows = (jnp.arange(batch)[:, None] * k + jnp.take_along_axis(parent, alive_idx, axis=1)).reshape(-1)

        def advance(params, c):  # feed the alive tokens (skipped at the last step: nothing is left to predict)
            step_logits, c = step_fn(params, alive_tok.reshape(-1, 1), c)
            return step_logits[:, -1].astype(s["logits"].dtype), c

        skip = lambda params, c: (s["logits"], c)
        logits, cache = jax.lax.cond(last, skip, advance, s["params"], reorder(s["cache"], rows))
        return dict(i=i + 1, logits=logits, cache=cache, alive=alive, alive_logp=alive_logp, fin=fin,
                    fin_score=fin_score, params=s["params"])  # fmt: skip

    def cond(s):
        # an alive hypothesis's score can at best reach its current log-prob over the largest penalty to come
        best_possible = s["alive_logp"][:, 0] / lp_max
        hopeless = (best_possible < s["fin_score"][:, -1]) | (s["alive_logp"][:, 0] <= NEG_INF / 2)
        return (s["i"] < max_new_tokens) & ~jnp.all(hopeless)

    s = jax.lax.while_loop(cond, body, state)
    return s["fin"], s["fin_score"]


# ------------------------------------------------------------------------- encoder-decoder (translation)
@partial(jax.jit, static_argnums=(0, 3))
def _init_cache(graphdef, state, source, max_len):
    return nnx.merge(graphdef, state).init_cache(source, max_len)


def _prepare(model: nnx.Module, source: jax.Array, max_len: int):
    if source.ndim != 2:
        raise ValueError(f"source: expected int tokens [batch, S], got shape {tuple(source.shape)}")
    if max_len < 1:
        raise ValueError(f"max_len={max_len}: expected >= 1 (the longest output, EOS included)")
    step_fn, params = module_step(model)
    cache = _init_cache(step_fn.graphdef, params, jnp.asarray(source, jnp.int32), max_len)
    bos = jnp.full((source.shape[0], 1), model.bos_id, jnp.int32)
    return step_fn, params, bos, cache


def greedy_decode(model: nnx.Module, source: jax.Array, max_len: int) -> jax.Array:
    """source int [batch, S] -> greedy outputs int32 [batch, max_len]: tokens, EOS, then pad_id."""
    step_fn, params, bos, cache = _prepare(model, source, max_len)
    return generate(step_fn, params, bos, cache, max_new_tokens=max_len, eos_id=model.eos_id, pad_id=model.pad_id)


def beam_decode(
    model: nnx.Module, source: jax.Array, max_len: int, *, beam_size: int = 4, alpha: float = 0.6
) -> jax.Array:
    """source int [batch, S] -> the best beam-search hypothesis int32 [batch, max_len] (GNMT length penalty
    `alpha`; tokens, EOS, then pad_id)."""
    step_fn, params, bos, cache = _prepare(model, source, max_len)
    seqs, _ = beam_search(
        step_fn,
        params,
        bos,
        cache,
        beam_size=beam_size,
        max_new_tokens=max_len,
        eos_id=model.eos_id,
        alpha=alpha,
        pad_id=model.pad_id,
        batch_axis=model.CACHE_BATCH_AXIS,
    )
    return seqs[:, 0]
