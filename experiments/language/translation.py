"""Number translation, English words -> digits ("three hundred and forty-two thousand and seven" -> "342007"):
a transformer encoder-decoder (jaxdl.models.seq2seq) vs an LSTM encoder-decoder with Bahdanau attention
(jaxdl.models.lstm_seq2seq), then greedy vs beam-search exact-match accuracy on the test split.

Train:     python -m jaxdl.main --config=experiments/language/translation.py:transformer --workdir=DIR
           python -m jaxdl.main --config=experiments/language/translation.py:lstm --workdir=DIR
Decode:    python experiments/language/translation.py --workdir=DIR [--beam=4] [--limit=N]
           (writes DIR/decode_eval.json and prints greedy vs beam exact match on the test split)
Data: numbers_words2digits (jaxdl/data/translation.py): 50 k train / 2 k test numbers in [0, 1e6), disjoint;
byte tokens + PAD/BOS/EOS (vocab 259), source 80, target 8. Both models: AdamW, warmup 100 + cosine, batch 64,
1,200 steps (~1.5 epochs), clip 1.0. Transformer: 3 + 3 layers, d 128, 4 heads, sinusoidal positions, tied
embeddings, dropout 0.1 (1.42 M parameters). LSTM: embed 64, 1 bidirectional encoder layer of 256 per direction,
decoder 256, attention 128 (2.15 M parameters).
Runtime and accuracy (2 shared CPU cores; experiments/language/README.md has the table): training 23.5 min
(transformer) / 13.8 min (LSTM); decoding the 2,000 test numbers 13 s greedy, 31 s beam 4 (transformer).
Args: transformer | lstm [,digits2words] [,smoke] (digits2words: the reverse direction, "342007" -> words, 80-byte
targets; smoke: 30 steps of the same model).
"""

import argparse
import json
import logging
import os
import sys
import time

import ml_collections
import numpy as np

from jaxdl import config as config_lib

MODELS = {
    "transformer": dict(name="seq2seq", dim=128, depth=3, heads=4, mlp_dim=512, dropout=0.1),
    "lstm": dict(name="lstm_seq2seq", embed_dim=64, hidden=256, attention_dim=128, dropout=0.1),
}
LR = {"transformer": 1e-3, "lstm": 2e-3}


def get_config(arg: str = "transformer") -> ml_collections.ConfigDict:
    tokens, smoke = config_lib.parse_arg(arg)
    reverse = "digits2words" in tokens
    tokens = [t for t in tokens if t != "digits2words"]
    if len(tokens) != 1 or tokens[0] not in MODELS:
        raise ValueError(f"config arg {arg!r}: expected one of {sorted(MODELS)} [,digits2words] [,smoke]")
    c = config_lib.base()
    c.data.name = "numbers_digits2words" if reverse else "numbers_words2digits"
    c.data.batch_size = 64
    c.data.eval_batch_size = 500
    c.model = ml_collections.ConfigDict(MODELS[tokens[0]])
    c.optim.name = "adamw"
    c.optim.lr = LR[tokens[0]]
    c.optim.weight_decay = 0.01
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 100
    c.optim.clip_norm = 1.0
    c.train.steps = 1200
    c.train.log_every = 100
    c.train.eval_every = 400
    c.train.checkpoint_every = 400
    c.train.progress = False
    return config_lib.shrink_for_smoke(c) if smoke else c


def get_sweep(arg: str = ""):
    del arg
    return [
        {"_name": name, **{f"model.{k}": v for k, v in m.items()}, "optim.lr": LR[name]} for name, m in MODELS.items()
    ]


def _text(ids: np.ndarray) -> str:
    """Byte tokens up to the first special (PAD/BOS/EOS, ids >= 256) as text."""
    ids = [int(i) for i in ids]
    end = next((k for k, i in enumerate(ids) if i >= 256), len(ids))
    return bytes(ids[:end]).decode("utf-8", errors="replace")


def evaluate(
    workdir: str,
    *,
    beam_size: int = 4,
    alpha: float = 0.6,
    split: str = "test",
    batch_size: int = 250,
    limit: int = 0,
    step: int | None = None,
) -> dict:
    """Greedy and beam-search exact-match accuracy of the checkpoint at `step` (default: the latest) in `workdir`
    on `split` (the first `limit` examples; 0 = all): the prediction up to its EOS must equal the target. The
    result (with up to 10 examples each method gets wrong) goes to DIR/decode_eval[_stepN].json."""
    import jax.numpy as jnp

    from jaxdl import data
    from jaxdl.compress.quantize import restore_float
    from jaxdl.models.seq2seq import beam_decode, exact_match, greedy_decode

    if beam_size < 1 or batch_size < 1 or limit < 0:
        raise ValueError(f"beam_size={beam_size}, batch_size={batch_size} must be >= 1 and limit={limit} >= 0")
    latest = step is None
    model, config, step, _ = restore_float(workdir, step)
    if not hasattr(model, "decode_step"):
        raise ValueError(f"{workdir}: model {config.model.name!r} is not an encoder-decoder with decode_step")
    source = data.load(config.data.name, split, config.data.data_dir or None)
    n = min(len(source), limit) if limit else len(source)
    hits, times = {"greedy": 0, f"beam{beam_size}": 0}, {"greedy": 0.0, f"beam{beam_size}": 0.0}
    errors = {name: [] for name in hits}
    for start in range(0, n, batch_size):
        rows = source.__getitems__(list(range(start, min(start + batch_size, n))))
        batch = data.preprocess(config.data.name, {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]})
        src, label, max_len = jnp.asarray(batch["input"]), jnp.asarray(batch["label"]), batch["label"].shape[1]
        for name in hits:
            t0 = time.perf_counter()
            if name == "greedy":
                pred = np.asarray(greedy_decode(model, src, max_len))
            else:
                pred = np.asarray(beam_decode(model, src, max_len, beam_size=beam_size, alpha=alpha))
            times[name] += time.perf_counter() - t0
            ok = np.asarray(exact_match(pred, label, model.eos_id))
            hits[name] += int(ok.sum())
            for i in np.flatnonzero(~ok)[: 10 - len(errors[name])]:
                source_ids, target = np.asarray(batch["input"][i]), np.where(batch["label"][i] < 0, 256, batch["label"][i])  # fmt: skip
                errors[name].append({"source": _text(source_ids), "target": _text(target), "output": _text(pred[i])})
    result = {"step": step, "split": split, "examples": n, "alpha": alpha}
    result |= {f"{k}/exact_match": v / n for k, v in hits.items()} | {f"{k}/seconds": v for k, v in times.items()}
    result["errors"] = errors
    with open(os.path.join(workdir, "decode_eval.json" if latest else f"decode_eval_step{step}.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="a finished run of this config")
    parser.add_argument("--beam", type=int, default=4, help="beam size compared against greedy")
    parser.add_argument("--alpha", type=float, default=0.6, help="GNMT length penalty exponent")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=0, help="first N examples only (0 = the whole split)")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    r = evaluate(
        args.workdir, beam_size=args.beam, alpha=args.alpha, split=args.split, limit=args.limit, step=args.step
    )
    print(f"| decoding | exact match ({r['split']}, {r['examples']} numbers, step {r['step']}) | seconds |")
    print("|---|---|---|")
    for name in ("greedy", f"beam{args.beam}"):
        print(f"| {name} | {r[f'{name}/exact_match']:.4f} | {r[f'{name}/seconds']:.1f} |")
    for name, wrong in r["errors"].items():
        for e in wrong[:3]:
            print(f"{name} wrong: {e['source']!r} -> {e['output']!r} (want {e['target']!r})")


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())  # run from the repository root: `python experiments/language/translation.py`
    main()
