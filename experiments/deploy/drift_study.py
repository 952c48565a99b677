"""Drift study on MNIST-1D inputs: planted shifts over many windows, detection power per shift and the false-alarm
rate under no shift, for our detectors (`jaxdl.serve.drift`: per-feature KS with Bonferroni, MMD permutation test)
and alibi-detect's `KSDrift` / `MMDDrift` on the very same windows (`drift_alibi.py`, run in a side virtualenv:
alibi-detect is never a jaxdl dependency).

    python3.12 -m venv /tmp/peer_deploy && /tmp/peer_deploy/bin/pip install alibi-detect torch
    nice python experiments/deploy/drift_study.py --peer_python=/tmp/peer_deploy/bin/python \
        --out=experiments/deploy/drift_results.json

Reference: 500 rows (MMD: its first 200); every window: 200 rows drawn without replacement from the other 4,500
rows of the pooled MNIST-1D train + test inputs (preprocessed as the trainer sees them, 40 features), then shifted:
noise (x + N(0, s² · var_feature)), scale (x · c: contrast), class prior (classes 0 and 1 make up `w` of the
window instead of ~20 %). Every detector tests at level --p_val; MMD uses --permutations permutations.

The bandwidth ablation (ours only, alibi-detect's bandwidth rule, the same windows):

    nice python experiments/deploy/drift_study.py --mmd_sigma=reference_alibi \
        --out=experiments/deploy/drift_results_sigma_ablation.json
"""

import json
import os
import subprocess
import tempfile
import time

import numpy as np
from absl import app, flags

from jaxdl import data
from jaxdl.metrics import environment
from jaxdl.serve import drift

flags.DEFINE_string("out", "experiments/deploy/drift_results.json", "results JSON")
flags.DEFINE_string("peer_python", "", "python of the side virtualenv with alibi-detect ('' = ours only)")
flags.DEFINE_integer("windows", 40, "windows per shifted condition")
flags.DEFINE_integer("null_windows", 120, "windows of the no-shift condition (the false-alarm rate)")
flags.DEFINE_integer("window", 200, "rows per window")
flags.DEFINE_integer("reference", 500, "reference rows (KS)")
flags.DEFINE_integer(
    "mmd_reference", 200, "the first rows of the reference that MMD compares with (cost: O((R + W)²) per permutation)"
)
flags.DEFINE_integer("permutations", 100, "MMD permutations")
flags.DEFINE_float("p_val", 0.05, "test level of every detector")
flags.DEFINE_enum(
    "mmd_sigma",
    "pooled",
    ["pooled", "reference_alibi"],
    "our MMD's bandwidth: the median pairwise distance of each pooled (reference + window) sample "
    "(jaxdl.serve.drift's default), or alibi-detect's rule, fixed from the reference: "
    "sqrt(median squared distance / 2)",
)
flags.DEFINE_integer("seed", 0, "seed of the reference split, the windows and the shifts")
FLAGS = flags.FLAGS

# (name, kind, magnitude): the conditions, each over --windows windows (--null_windows for "none")
CONDITIONS = [
    ("none", "none", 0.0),
    ("noise_0.2", "noise", 0.2),
    ("noise_0.5", "noise", 0.5),
    ("scale_1.1", "scale", 1.1),
    ("scale_1.3", "scale", 1.3),
    ("prior_0.4", "prior", 0.4),
    ("prior_0.7", "prior", 0.7),
]


def pooled_inputs() -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for split in ("train", "test"):
        src = data.load("mnist1d", split)
        b = next(data.eval_batches(src, dataset="mnist1d", batch_size=len(src)))
        xs.append(np.asarray(b["input"], np.float64))
        ys.append(np.asarray(b["label"]))
    return np.concatenate(xs), np.concatenate(ys)


def make_windows(x, y, rng) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(reference [R, 40], {condition: windows [n, W, 40]})."""
    perm = rng.permutation(len(x))
    ref_idx, pool = perm[: FLAGS.reference], perm[FLAGS.reference :]
    ref, px, py = x[ref_idx], x[pool], y[pool]
    std = ref.std(0)
    is01 = np.isin(py, (0, 1))
    out = {}
    for name, kind, mag in CONDITIONS:
        n = FLAGS.null_windows if kind == "none" else FLAGS.windows
        out[name] = np.zeros((n, FLAGS.window, x.shape[1]))
        for w in range(n):
            if kind == "prior":  # classes 0, 1 make up `mag` of the window (the rest from the other classes)
                k = int(round(mag * FLAGS.window))
                idx = np.concatenate([rng.choice(np.flatnonzero(is01), k, replace=False),
                                      rng.choice(np.flatnonzero(~is01), FLAGS.window - k, replace=False)])  # fmt: skip
            else:
                idx = rng.choice(len(px), FLAGS.window, replace=False)
            win = px[idx]
            if kind == "noise":
                win = win + rng.normal(size=win.shape) * mag * std
            elif kind == "scale":
                win = win * mag
            out[name][w] = win
    return ref, out


def ours(ref, windows) -> dict:
    res = {}
    mmd_ref = ref[: FLAGS.mmd_reference]
    sigma = drift.median_bandwidth(mmd_ref) / np.sqrt(2) if FLAGS.mmd_sigma == "reference_alibi" else None
    for name, _, _ in CONDITIONS:
        ks_p, mmd_p = [], []
        for w, win in enumerate(windows[name]):
            ks_p.append(drift.ks_features(ref, win)[1])
            mmd_p.append(drift.mmd_test(mmd_ref, win, permutations=FLAGS.permutations, sigma=sigma, seed=w)[1])
        res[name] = {"ks_p": ks_p, "mmd_p": mmd_p}
    return res


def rate(p: list[float], level: float) -> dict:
    """Fraction of windows with p < level (alibi-detect's is_drift rule) and its Monte Carlo standard error."""
    r = float(np.mean(np.asarray(p) < level))
    return {"rate": r, "mc_se": float(np.sqrt(max(r * (1 - r), 1e-12) / len(p)))}


def main(argv):
    del argv
    t0 = time.time()
    rng = np.random.default_rng(FLAGS.seed)
    x, y = pooled_inputs()
    ref, windows = make_windows(x, y, rng)
    out = {
        "setup": {
            k: getattr(FLAGS, k)
            for k in (
                "windows",
                "null_windows",
                "window",
                "reference",
                "mmd_reference",
                "permutations",
                "p_val",
                "seed",
                "mmd_sigma",
            )
        },
        "conditions": [{"name": n, "kind": k, "magnitude": m} for n, k, m in CONDITIONS],
    }
    t = time.time()
    p_ours = ours(ref, windows)
    out["seconds_ours"] = time.time() - t
    p_peer, out["peer"] = None, None
    if FLAGS.peer_python:
        with tempfile.TemporaryDirectory() as tmp:
            npz, peer_json = os.path.join(tmp, "windows.npz"), os.path.join(tmp, "peer.json")
            np.savez(npz, reference=ref, mmd_reference=ref[: FLAGS.mmd_reference],
                     **{f"windows_{n}": w for n, w in windows.items()})  # fmt: skip
            script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "drift_alibi.py")
            subprocess.run([FLAGS.peer_python, script, npz, peer_json, str(FLAGS.p_val), str(FLAGS.permutations)],
                           check=True)  # fmt: skip
            with open(peer_json) as f:
                peer = json.load(f)
        p_peer, out["peer"] = peer["p_values"], peer["environment"]
        out["seconds_peer"] = peer["seconds"]
    table = {}
    for name, _, _ in CONDITIONS:
        row = {f"ours_{d}": rate(p_ours[name][f"{d}_p"], FLAGS.p_val) for d in ("ks", "mmd")}
        if p_peer:
            row.update({f"alibi_{d}": rate(p_peer[name][f"{d}_p"], FLAGS.p_val) for d in ("ks", "mmd")})
            # agreement of the per-window decisions on the same windows
            for d in ("ks", "mmd"):
                a = np.asarray(p_ours[name][f"{d}_p"]) < FLAGS.p_val
                b = np.asarray(p_peer[name][f"{d}_p"]) < FLAGS.p_val
                row[f"agreement_{d}"] = float(np.mean(a == b))
            row["ks_p_max_abs_diff"] = float(np.max(np.abs(np.subtract(p_ours[name]["ks_p"], p_peer[name]["ks_p"]))))
        table[name] = row
    out["detection_rates"] = table
    out["p_values"] = {"ours": p_ours, "alibi": p_peer}
    out["environment"] = environment()
    out["date"] = time.strftime("%Y-%m-%d")
    out["seconds_total"] = time.time() - t0
    with open(FLAGS.out, "w") as f:
        json.dump(out, f, indent=1, default=float)
    for name, row in table.items():
        print(name, {k: (v["rate"] if isinstance(v, dict) else round(v, 3)) for k, v in row.items()})
    print(f"total {out['seconds_total']:.0f} s")


if __name__ == "__main__":
    app.run(main)
