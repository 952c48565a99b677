"""BiLSTM-softmax vs BiLSTM-CRF on the 5 folds of the Hironsan NER corpus, beside sklearn-crfsuite on the same folds.

    python experiments/structured/tagging_study.py --workdir=/tmp/runs/tagging            # 10 runs, then the table
    python experiments/structured/tagging_study.py --export_folds=/tmp/hironsan_folds.json # for the peer
    /tmp/peer_structured/bin/python experiments/structured/peer_crfsuite.py --folds=/tmp/hironsan_folds.json \
        --out=experiments/structured/peer_crfsuite.json
    python experiments/structured/tagging_study.py --workdir=/tmp/runs/tagging --table_only

Writes experiments/structured/tagging_results.csv (one row per head and fold: test-fold entity F1, precision,
recall, token accuracy, invalid-BIO rate, wall time; device, date, versions, seed) and tagging_summary.json (mean
± sample std over the n = 5 folds, with the peer's). A run whose workdir already holds final.json is reused.
Flags: --heads (default softmax,crf), --folds (0,1,2,3,4), --steps (config default).
"""

import csv
import json
import os
import statistics
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study_env  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
METRICS = ("f1", "precision", "recall", "accuracy", "invalid_rate")
FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "/tmp/runs/tagging", "one sub-folder per run")
flags.DEFINE_string("heads", "softmax,crf", "comma-separated tagger.py heads")
flags.DEFINE_string("folds", "0,1,2,3,4", "comma-separated folds")
flags.DEFINE_integer("steps", 0, "train steps (0: the config's)")
flags.DEFINE_string("export_folds", "", "write the folds (tokens, tags, fold of each sentence) as JSON and stop")
flags.DEFINE_bool("table_only", False, "only rebuild the CSV/JSON from finished runs")


def export_folds(path: str) -> None:
    from jaxdl.data import hironsan

    fold_of = {}
    for k in range(hironsan.FOLDS):
        for i in hironsan.fold_indices(k)["test"]:
            fold_of[int(i)] = k
    sents = [{"tokens": list(w), "tags": list(t), "fold": fold_of[i]} for i, (w, t) in enumerate(hironsan.sentences())]
    with open(path, "w") as f:
        json.dump({"source": hironsan.SDIST, "tags": list(hironsan.TAGS), "sentences": sents}, f, ensure_ascii=False)
    print(f"wrote {len(sents)} sentences to {path}")


def run_one(head: str, fold: int) -> dict:
    import tagger  # experiments/structured/tagger.py

    from jaxdl.train import train_and_evaluate

    workdir = os.path.join(FLAGS.workdir, f"{head}_fold{fold}")
    done = os.path.join(workdir, "final.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    c = tagger.get_config(f"{head},fold={fold}")
    if FLAGS.steps:
        c.train.steps = FLAGS.steps
    c.train.eval_every = 0
    t0 = time.time()
    final = train_and_evaluate(c, workdir)
    out = {k.removeprefix("eval/"): float(v) for k, v in final.items()}
    out |= {"wall_s": round(time.time() - t0, 1), "steps": c.train.steps, "seed": c.seed}
    with open(done, "w") as f:
        json.dump(out, f)
    return out


def environment() -> dict:
    import seqeval

    return study_env.environment(seqeval=getattr(seqeval, "__version__", "1.2.2"))


def mean_std(xs: list[float]) -> dict:
    return {"mean": statistics.mean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs)}


def main(argv):
    del argv
    if FLAGS.export_folds:
        return export_folds(FLAGS.export_folds)
    heads, folds = FLAGS.heads.split(","), [int(k) for k in FLAGS.folds.split(",")]
    env = environment()
    rows = []
    for head in heads:
        for fold in folds:
            done = os.path.join(FLAGS.workdir, f"{head}_fold{fold}", "final.json")
            if FLAGS.table_only and not os.path.exists(done):
                continue
            r = run_one(head, fold)
            rows.append({"model": f"bilstm_{head}", "fold": fold, **{m: r[m] for m in METRICS}} | r | env)
            print(head, fold, {m: round(r[m], 4) for m in METRICS}, flush=True)
    keys = ["model", "fold", *METRICS, "wall_s", "steps", "seed", *env]
    with open(os.path.join(HERE, "tagging_results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    summary = {"environment": env, "models": {}}
    for model in sorted({r["model"] for r in rows}):
        rs = [r for r in rows if r["model"] == model]
        summary["models"][model] = {m: mean_std([r[m] for r in rs]) for m in METRICS}
    peer = os.path.join(HERE, "peer_crfsuite.json")
    if os.path.exists(peer):
        with open(peer) as f:
            p = json.load(f)
        summary["models"]["sklearn_crfsuite"] = {
            m: mean_std([r[m] for r in p["folds"]]) for m in METRICS if m in p["folds"][0]
        }
    with open(os.path.join(HERE, "tagging_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print("| model | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS))
    for model, s in summary["models"].items():
        cells = [f"{100 * s[m]['mean']:.1f} ± {100 * s[m]['std']:.1f}" if m in s else "" for m in METRICS]
        print(f"| {model} (n = {s['f1']['n']}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    app.run(main)
