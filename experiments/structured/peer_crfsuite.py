"""Peer: a classical linear-chain CRF (sklearn-crfsuite = python-crfsuite, L-BFGS, c1 = c2 = 0.1, 100 iterations)
with hand-made features on the same 5 folds of the Hironsan corpus as the BiLSTM taggers, scored with seqeval.

Runs in a side virtualenv (never a jaxdl dependency):
    python3.12 -m venv /tmp/peer_structured && /tmp/peer_structured/bin/pip install sklearn-crfsuite seqeval
    python experiments/structured/tagging_study.py --export_folds=/tmp/hironsan_folds.json   # jaxdl's venv
    /tmp/peer_structured/bin/python experiments/structured/peer_crfsuite.py --folds=/tmp/hironsan_folds.json \
        --out=experiments/structured/peer_crfsuite.json
Features per token (the sklearn-crfsuite tutorial's, adapted to Japanese): the word, its 1-3 character prefixes and
suffixes, its character classes (digit / hiragana / katakana / kanji / latin), the same for the words at -2..+2,
BOS / EOS. Writes per-fold metrics plus versions and date.
"""

import argparse
import datetime
import importlib.metadata
import json
import platform
import time
import unicodedata


def char_class(w: str) -> str:
    out = set()
    for ch in w:
        name = unicodedata.name(ch, "")
        if ch.isdigit():
            out.add("digit")
        elif "HIRAGANA" in name:
            out.add("hira")
        elif "KATAKANA" in name:
            out.add("kata")
        elif "CJK" in name:
            out.add("kanji")
        elif ch.isalpha():
            out.add("latin")
        else:
            out.add("other")
    return "+".join(sorted(out))


def token_features(words, i):
    f = {"bias": 1.0}
    for d in (-2, -1, 0, 1, 2):
        j = i + d
        if 0 <= j < len(words):
            w = words[j]
            f[f"{d}:word"] = w
            f[f"{d}:class"] = char_class(w)
            if d == 0:
                for k in (1, 2, 3):
                    f[f"prefix{k}"] = w[:k]
                    f[f"suffix{k}"] = w[-k:]
                f["len"] = min(len(w), 6)
        elif d == -1:
            f["BOS"] = 1.0
        elif d == 1:
            f["EOS"] = 1.0
    return f


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--folds", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    import sklearn_crfsuite
    from seqeval.metrics import f1_score, precision_score, recall_score

    with open(args.folds) as f:
        corpus = json.load(f)
    sents = corpus["sentences"]
    results = []
    for fold in sorted({s["fold"] for s in sents}):
        train = [s for s in sents if s["fold"] != fold]
        test = [s for s in sents if s["fold"] == fold]
        feats = lambda ss: [[token_features(s["tokens"], i) for i in range(len(s["tokens"]))] for s in ss]  # noqa: E731
        t0 = time.time()
        model = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=0.1, c2=0.1, max_iterations=100)
        model.fit(feats(train), [s["tags"] for s in train])
        pred = model.predict(feats(test))
        gold = [s["tags"] for s in test]
        invalid = 0
        for seq in pred:
            prev = "O"
            for t in seq:
                if t.startswith("I-") and prev[2:] != t[2:]:
                    invalid += 1
                    break
                prev = t
        tokens = sum(len(g) for g in gold)
        r = {
            "fold": fold,
            "f1": f1_score(gold, pred),
            "precision": precision_score(gold, pred),
            "recall": recall_score(gold, pred),
            "accuracy": sum(a == b for g, q in zip(gold, pred, strict=True) for a, b in zip(g, q, strict=True))
            / tokens,
            "invalid_rate": invalid / len(pred),
            "wall_s": round(time.time() - t0, 1),
        }
        results.append(r)
        print(r, flush=True)
    env = {
        "device": f"{platform.machine()} CPU (shared)",
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        **{p: importlib.metadata.version(p) for p in ("sklearn-crfsuite", "python-crfsuite", "seqeval")},
        "params": {"algorithm": "lbfgs", "c1": 0.1, "c2": 0.1, "max_iterations": 100},
    }
    with open(args.out, "w") as f:
        json.dump({"environment": env, "folds": results}, f, indent=1)


if __name__ == "__main__":
    main()
