"""Skip-gram negative-sampling word vectors on the fortunes train split: nearest neighbours and analogies.

Command: python experiments/language/word2vec.py [--steps=4000] [--dim=100] [--min_count=5] [--seed=0]
         [--out=experiments/language/word2vec.json]   (every number, with date, versions, machine and seed)

Sentences are the fortunes of the train split (jaxdl/data/text_corpora.py), cut into lower-cased word tokens
(jaxdl/text/word2vec.py `tokenize`); words seen fewer than min_count times are dropped. Trains SGNS (window 5,
5 negatives from unigram^0.75, subsampling t=1e-3, Adam 3e-3 decayed linearly to 0, batches of 1024 pairs) for
--steps steps, then prints the corpus/vocabulary sizes, the loss curve, the 5 nearest neighbours (cosine) of
common words and a few a - b + c analogies. A few minutes on 2 CPU cores.
"""

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import sys
import time

import numpy as np

from jaxdl import metrics
from jaxdl.data import text_corpora
from jaxdl.text import word2vec as w2v

QUERIES = ("man", "woman", "love", "money", "god", "computer", "war", "good", "day", "water")
ANALOGIES = (("king", "man", "woman"), ("he", "man", "woman"), ("his", "he", "she"), ("men", "man", "woman"),
             ("good", "better", "bad"), ("day", "days", "years"))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--min_count", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="experiments/language/word2vec.json", help="JSON of every number ('' = none)")
    args = parser.parse_args()

    text = text_corpora.split_text("fortunes", "train")
    sentences = [w2v.tokenize(doc) for doc in re.split(r"^%\n", text, flags=re.M) if doc.strip()]
    config = w2v.Config(dim=args.dim, min_count=args.min_count, steps=args.steps, seed=args.seed)
    start = time.time()
    model = w2v.Word2Vec.train(sentences, config)
    seconds = time.time() - start
    n_tokens = sum(len(s) for s in sentences)
    print(f"fortunes train: {len(sentences)} fortunes, {n_tokens} word tokens, vocabulary {len(model.vocab)} "
          f"(min_count {args.min_count}); {config}")  # fmt: skip
    chunks = np.array_split(model.losses, 8)
    print(f"trained {args.steps} steps in {seconds:.1f} s; mean loss per eighth of training: "
          + ", ".join(f"{c.mean():.3f}" for c in chunks))  # fmt: skip
    neighbours = {w: model.nearest(w, 5) for w in QUERIES if w in model.vocab.index}
    analogies = {
        f"{a} - {b} + {c}": model.analogy(a, b, c, 3)
        for a, b, c in ANALOGIES
        if all(w in model.vocab.index for w in (a, b, c))
    }
    print("\n| word | nearest neighbours (cosine) |\n|---|---|")
    for word, near in neighbours.items():
        print(f"| {word} | " + ", ".join(f"{w} {s:.2f}" for w, s in near) + " |")
    print("\n| a - b + c | top 3 |\n|---|---|")
    for query, top in analogies.items():
        print(f"| {query} | " + ", ".join(f"{w} {s:.2f}" for w, s in top) + " |")
    if args.out:
        record = {
            "command": " ".join(["python", "experiments/language/word2vec.py", *sys.argv[1:]]),
            "date": datetime.date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "environment": metrics.environment(),
            "seed": args.seed,
            "config": dataclasses.asdict(config),
            "corpus": {"fortunes": len(sentences), "word_tokens": n_tokens, "vocabulary": len(model.vocab)},
            "train_seconds": seconds,
            "loss_per_eighth": [float(c.mean()) for c in chunks],
            "nearest": {w: [[n, float(s)] for n, s in near] for w, near in neighbours.items()},
            "analogies": {q: [[n, float(s)] for n, s in top] for q, top in analogies.items()},
        }
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1, default=str)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
