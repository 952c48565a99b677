"""Skip-gram negative-sampling word vectors on the fortunes train split: nearest neighbours and analogies.

Command: python experiments/language/word2vec.py [--steps=4000] [--dim=100] [--min_count=5]

Sentences are the fortunes of the train split (jaxdl/data/text_corpora.py), cut into lower-cased word tokens
(jaxdl/text/word2vec.py `tokenize`); words seen fewer than min_count times are dropped. Trains SGNS (window 5,
5 negatives from unigram^0.75, subsampling t=1e-3, Adam 3e-3 decayed linearly to 0, batches of 1024 pairs) for
--steps steps, then prints the corpus/vocabulary sizes, the loss curve, the 5 nearest neighbours (cosine) of
common words and a few a - b + c analogies. A few minutes on 2 CPU cores.
"""

import argparse
import re
import time

import numpy as np

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
    print("\n| word | nearest neighbours (cosine) |\n|---|---|")
    for word in QUERIES:
        if word in model.vocab.index:
            print(f"| {word} | " + ", ".join(f"{w} {s:.2f}" for w, s in model.nearest(word, 5)) + " |")
    print("\n| a - b + c | top 3 |\n|---|---|")
    for a, b, c in ANALOGIES:
        if all(w in model.vocab.index for w in (a, b, c)):
            print(f"| {a} - {b} + {c} | " + ", ".join(f"{w} {s:.2f}" for w, s in model.analogy(a, b, c, 3)) + " |")


if __name__ == "__main__":
    main()
