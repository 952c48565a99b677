"""Character-level n-gram baselines: test bits per character of orders 1..5 with add-k, Katz backoff and
interpolated Kneser-Ney on the pydoc and fortunes corpora (jaxdl/data/text_corpora.py splits).

Command: python experiments/language/ngram.py [--corpora=pydoc,fortunes] [--max_order=5] [--level=char|byte]
         [--out=experiments/language/ngram_<level>.json]   (every number, with date, versions and machine)
(--level=byte: UTF-8 bytes, vocabulary 256, the unit of the neural byte-level LMs of config.py; the "bits per
character" columns are then bits per byte.)

The vocabulary is the characters of the train split plus <unk> (test characters never seen in train map to
<unk>, which every smoothing gives non-zero probability). Add-k's k is picked per order on the valid split from
K_GRID; Katz and KN have no tuned parameter (Good-Turing discounts; KN discount n1 / (n1 + 2 n2) per order).
Prints a markdown table; "s" is the wall time of fitting + scoring all orders of that row.
"""

import argparse
import datetime
import json
import platform
import sys
import time

import numpy as np

from jaxdl.data import text_corpora
from jaxdl.text.ngram import NGramLM
from jaxdl.text.tokenizer import ByteTokenizer, CharTokenizer

K_GRID = (1.0, 0.1, 0.01, 0.001)


def run(corpus: str, max_order: int, level: str = "char", records: list | None = None) -> list[str]:
    texts = {s: text_corpora.split_text(corpus, s) for s in text_corpora.SPLITS}
    tok = CharTokenizer.train(texts["train"]) if level == "char" else ByteTokenizer()
    ids = {s: np.array(tok.encode(t), np.int64) for s, t in texts.items()}
    rows = []
    for smoothing in ("addk", "katz", "kn"):
        start, cells, ks = time.perf_counter(), [], []
        for order in range(1, max_order + 1):
            if smoothing == "addk":
                models = [NGramLM(order, tok.vocab_size, "addk", k=k).fit(ids["train"]) for k in K_GRID]
                lm = min(models, key=lambda m: m.bits_per_character(ids["valid"]))
                ks.append(f"{lm.k:g}")
            else:
                lm = NGramLM(order, tok.vocab_size, smoothing).fit(ids["train"])
            bits = lm.bits_per_character(ids["test"])
            cells.append(f"{bits:.3f}")
            if records is not None:
                k = {"k": lm.k} if smoothing == "addk" else {}
                records.append(dict(corpus=corpus, level=level, smoothing=smoothing, order=order, test_bits=bits, **k))
        seconds = time.perf_counter() - start
        name = {"addk": f"add-k (k={'/'.join(ks)})", "katz": "Katz", "kn": "interp. KN"}[smoothing]
        rows.append(f"| {corpus} | {name} | " + " | ".join(cells) + f" | {seconds:.1f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", default="pydoc,fortunes")
    parser.add_argument("--max_order", type=int, default=5)
    parser.add_argument("--level", choices=("char", "byte"), default="char", help="byte: UTF-8 bytes (vocab 256)")
    parser.add_argument(
        "--out", default="", help="JSON of every number (default experiments/language/ngram_<level>.json)"
    )
    args = parser.parse_args()
    records: list[dict] = []
    orders = range(1, args.max_order + 1)
    header = "| corpus | smoothing | " + " | ".join(f"n={n}" for n in orders) + " | s |"
    lines = [header, "|" + "---|" * (args.max_order + 3)]
    sizes = []
    for corpus in args.corpora.split(","):
        lines += run(corpus, args.max_order, args.level, records)
        chars = {s: len(text_corpora.split_text(corpus, s)) for s in text_corpora.SPLITS}
        sizes.append(f"{corpus}: " + ", ".join(f"{s} {n:,}" for s, n in chars.items()) + " characters")
    print(f"Test bits per {args.level} ({args.level}-level n-grams)\n")
    print("\n".join(lines))
    print("\n" + "; ".join(sizes))
    out = args.out or f"experiments/language/ngram_{args.level}.json"
    meta = dict(
        command=" ".join(["python", *sys.argv]),
        date=datetime.date.today().isoformat(),
        python=platform.python_version(),
        numpy=np.__version__,
        machine=f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores",
        sizes=sizes,
    )
    with open(out, "w") as f:
        json.dump(dict(meta, results=records), f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
