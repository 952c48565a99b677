"""Full vs sampled vs hierarchical softmax on a BPE language model head: step time and held-out perplexity.

Command: python experiments/language/softmax_bench.py [--vocab=8192] [--steps=600] [--batch=256] [--context=4]
         [--seed=0] [--out=experiments/language/softmax_bench.json]   (every number, date, versions, machine, seed)

Data: byte-level BPE (jaxdl/text/tokenizer.py) with --vocab ids trained on the fortunes train split; the model
predicts token t from the --context previous tokens: their embeddings (64 each) concatenated, a dense layer to
hidden 256 + GELU, then the output layer (jaxdl/layers/softmax.py): "full"; "sampled" with --num_sampled
negatives without replacement from the train unigram^0.75 (exact softmax at eval); "hierarchical" on the Huffman
tree of the train unigram counts. Every head trains --steps Adam steps (lr 2e-3) on the same batches (positions
drawn with one seed), from the same initial embedding/dense weights.

Reported per head: `head ms`, the median wall time of a jitted, warm forward+backward of the output layer alone
on [batch, 256] random hidden states; `step ms`, the median of a whole jitted training step (model + head + Adam
update); both medians of --repeats runs after a warm-up call. `valid ppl`: exp(mean -log p) of the exact
probabilities over the first --eval_tokens positions of the valid split; `train loss`: the mean training loss
over the last 10 % of the steps (the sampled head's is its sampled loss, not comparable). Prints a markdown
table. Wall times depend on the machine's load; compare heads within one run.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdl import metrics
from jaxdl.data import text_corpora
from jaxdl.layers import softmax
from jaxdl.text.tokenizer import BPETokenizer

HIDDEN, EMBED = 256, 64


class ContextLM(nnx.Module):
    """ids [batch, context] -> hidden [batch, 256] -> output layer `head`."""

    def __init__(self, vocab: int, context: int, head: str, head_kwargs: dict, *, rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab, EMBED, rngs=rngs)
        self.dense = nnx.Linear(context * EMBED, HIDDEN, rngs=rngs)
        self.head = softmax.make(head, HIDDEN, vocab, rngs=rngs, **head_kwargs)

    def hidden(self, x: jax.Array) -> jax.Array:
        e = self.embed(x)
        return nnx.gelu(self.dense(e.reshape(*x.shape[:-1], -1)))


def windows(ids: np.ndarray, positions: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs int32 [n, context], targets int32 [n]) predicting ids[p] from ids[p - context : p]."""
    return ids[positions[:, None] + np.arange(-context, 0)].astype(np.int32), ids[positions].astype(np.int32)


def median_ms(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile + warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def run_head(name: str, kwargs: dict, ids: dict, args) -> dict:
    with nnx.use_eager_sharding(False):
        model = ContextLM(args.vocab, args.context, name, kwargs, rngs=nnx.Rngs(args.seed))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt = optax.adam(2e-3)
    opt_state = opt.init(params)

    def loss_fn(params, rest, x, y, key):
        m = nnx.merge(graphdef, params, rest, copy=True)
        return jnp.mean(m.head(m.hidden(x), y, train=True, rngs=key))

    @jax.jit
    def step(params, opt_state, rest, x, y, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, rest, x, y, key)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def eval_nll(params, rest, x, y):
        m = nnx.merge(graphdef, params, rest, copy=True)
        return -jnp.sum(m.head.log_prob(m.hidden(x), y))

    head_graph, head_params, head_rest = nnx.split(model.head, nnx.Param, ...)

    @jax.jit
    def head_fwd_bwd(head_params, h, y, key):
        f = lambda p, h: jnp.mean(nnx.merge(head_graph, p, head_rest, copy=True)(h, y, train=True, rngs=key))
        return jax.grad(f, argnums=(0, 1))(head_params, h)

    rng = np.random.default_rng(args.seed)  # the same batches for every head
    train_ids, losses = ids["train"], []
    start = time.time()
    for i in range(args.steps):
        x, y = windows(train_ids, rng.integers(args.context, len(train_ids), args.batch), args.context)
        params, opt_state, loss = step(params, opt_state, rest, x, y, jax.random.key(i))
        losses.append(loss)
    train_s = time.time() - start
    valid = ids["valid"][: args.eval_tokens + args.context]
    nll, count = 0.0, 0
    for a in range(args.context, len(valid), 4096):
        x, y = windows(valid, np.arange(a, min(a + 4096, len(valid))), args.context)
        nll, count = nll + float(eval_nll(params, rest, x, y)), count + len(y)
    h = jnp.asarray(np.random.default_rng(1).normal(size=(args.batch, HIDDEN)), jnp.float32)
    x, y = windows(train_ids, rng.integers(args.context, len(train_ids), args.batch), args.context)
    return {
        "head ms": median_ms(head_fwd_bwd, head_params, h, jnp.asarray(y), jax.random.key(0), repeats=args.repeats),
        "step ms": median_ms(
            lambda *a: step(*a)[2], params, opt_state, rest, x, y, jax.random.key(0), repeats=args.repeats
        ),  # fmt: skip
        "train loss": float(np.mean(np.asarray(jnp.stack(losses))[-max(1, args.steps // 10) :])),
        "valid ppl": float(np.exp(nll / count)),
        "train s": train_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--context", type=int, default=4)
    parser.add_argument("--num_sampled", type=int, default=256)
    parser.add_argument("--eval_tokens", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heads", default="full,sampled,hierarchical")
    parser.add_argument(
        "--out", default="experiments/language/softmax_bench.json", help="JSON of every number ('' = none)"
    )
    args = parser.parse_args()

    start = time.time()
    texts = {s: text_corpora.split_text("fortunes", s) for s in ("train", "valid")}
    tok = BPETokenizer.train([texts["train"]], args.vocab)
    ids = {s: np.array(tok.encode(t), np.int32) for s, t in texts.items()}
    args.vocab = tok.vocab_size
    counts = np.bincount(ids["train"], minlength=args.vocab)
    print(f"BPE vocab {args.vocab}; tokens: train {len(ids['train'])}, valid {len(ids['valid'])} "
          f"(first {args.eval_tokens} scored); tokenizer {time.time() - start:.1f} s; jax {jax.__version__}, "
          f"{jax.devices()[0].device_kind}")  # fmt: skip
    kwargs = {
        "full": {},
        "sampled": {"num_sampled": args.num_sampled, "proposal": "unigram", "counts": counts},
        "hierarchical": {"tree": "huffman", "counts": counts},
    }
    rows = []
    for name in args.heads.split(","):
        if name not in kwargs:
            raise ValueError(f"--heads has {name!r}; heads: {', '.join(kwargs)}")
        result = run_head(name, kwargs[name], ids, args)
        rows.append((name, result))
        print(f"{name}: {result}", flush=True)
    label = {"sampled": f"sampled (K={args.num_sampled})", "hierarchical": "hierarchical (Huffman)"}
    print(f"\nvocab {args.vocab}, hidden {HIDDEN}, batch {args.batch}, {args.steps} steps, context {args.context}\n")
    print("| head | head fwd+bwd ms | train step ms | train s | train loss (last 10 %) | valid ppl |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows:
        print(f"| {label.get(name, name)} | {r['head ms']:.2f} | {r['step ms']:.2f} | {r['train s']:.1f} | "
              f"{r['train loss']:.3f} | {r['valid ppl']:.1f} |")  # fmt: skip
    print(f"\ntotal {time.time() - start:.0f} s")
    if args.out:
        record = {
            "command": " ".join(["python", "experiments/language/softmax_bench.py", *sys.argv[1:]]),
            "date": datetime.date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "environment": metrics.environment(),
            "seed": args.seed,
            "args": vars(args),
            "tokens": {"train": len(ids["train"]), "valid": len(ids["valid"])},
            "total_seconds": time.time() - start,
            "results": [{"head": name, **r} for name, r in rows],
        }
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1, default=str)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
