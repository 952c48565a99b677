"""The peer of the MNIST-1D table: the authors' own PyTorch code (greydanus/mnist1d), run unchanged.

Runs in a side virtualenv with PyTorch (never jaxdl's .venv); see experiments/mnist1d/peer/README.md:

    /tmp/peer_venv/bin/python experiments/mnist1d/peer/run_peer.py --repo=/tmp/mnist1d \
        --models=logistic,mlp,cnn,gru --variants=default,shuffled --seeds=0,1,2 \
        --out=experiments/mnist1d/peer/results.json

Nothing of the authors' code is copied here: `--repo` is a checkout of https://github.com/greydanus/mnist1d
(Apache-2.0) and this script imports its `notebooks/models.py` (LinearBase, MLPBase, ConvBase, GRUBase) and
`notebooks/train.py` (`get_model_args`, `train_model`: Adam lr 1e-2, batch 100, 8,000 steps, sequential batches)
and loads its frozen `mnist1d_data.pkl`, as the repository's `notebooks/mnist1d-classification.ipynb` does. What
this script adds: the seeds (`torch.manual_seed(seed)` + numpy + random: what train.py's `set_seed` means to do;
that function cannot be called as shipped, train.py does not import `random`), one torch thread, evaluation every
1,000 steps instead of 250 (evaluation does not touch training: no dropout, no batch norm), the shuffled variant
(the notebook's permutation, `np.random.seed(42); np.random.permutation(40)`), and a JSON record. Runs already
in `--out` (same model, variant, seed, steps, permutation) are skipped, so an interrupted call resumes.
"""

import argparse
import datetime
import importlib.util
import json
import os
import pickle
import platform
import random
import subprocess
import sys
import time

import numpy as np
import torch

SHUFFLE_PERMS = ("paper", "jaxdl")  # paper: the notebook's np.random.seed(42); jaxdl: jaxdl.data.mnist1d's


def load_module(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def permutation(kind: str, length: int = 40) -> np.ndarray:
    if kind == "paper":  # notebooks/mnist1d-classification.ipynb, "Shuffle the pixels"
        np.random.seed(42)
        return np.random.permutation(length)
    return np.random.default_rng(0).permutation(length)  # jaxdl/data/mnist1d.py SHUFFLE_SEED = 0


def make_model(models, name: str, args):
    if name == "logistic":
        return models.LinearBase(args.input_size, args.output_size)
    if name == "mlp":
        return models.MLPBase(args.input_size, args.output_size)
    if name == "cnn":
        return models.ConvBase(output_size=args.output_size)
    if name == "gru":
        return models.GRUBase(input_size=1, output_size=args.output_size)
    raise ValueError(f"unknown model {name!r}")


def git_commit(repo: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repo", required=True, help="a checkout of github.com/greydanus/mnist1d")
    p.add_argument("--commit", default="", help="the repo's commit, when --repo is an export without .git")
    p.add_argument("--models", default="logistic,mlp,cnn,gru")
    p.add_argument("--variants", default="default,shuffled")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=0, help="0: train.py's default (8000)")
    p.add_argument("--perm", default="paper", choices=SHUFFLE_PERMS, help="the shuffled variant's permutation")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--train_order",
        default="",
        help="diagnostic: a .npy of train indices; the train split is read in this order (e.g. jaxdl's TFDS order, "
        "written by experiments/mnist1d/peer/tfds_order.py). Recorded as train_order in each run.",
    )
    p.add_argument("--out", required=True, help="JSON file: runs are appended, finished ones skipped")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    sys.path.insert(0, a.repo)  # train.py does `from mnist1d.utils import ObjectView`: the repo's own package
    models = load_module(os.path.join(a.repo, "notebooks", "models.py"), "peer_models")
    train = load_module(os.path.join(a.repo, "notebooks", "train.py"), "peer_train")
    with open(os.path.join(a.repo, "mnist1d_data.pkl"), "rb") as f:  # the authors' frozen data set
        data = pickle.load(f)

    record = {"runs": []}
    if os.path.exists(a.out):
        with open(a.out) as f:
            record = json.load(f)
    # The frozen pickle vs what the pip package generates (jaxdl's builder uses the latter, as float32).
    from mnist1d.data import get_dataset_args, make_dataset

    gen = make_dataset(get_dataset_args())
    keys = ("x", "y", "x_test", "y_test")
    same = all(np.array_equal(np.float32(data[k]), np.float32(gen[k])) for k in keys)
    diff = max(float(np.abs(np.asarray(data[k], np.float64) - np.asarray(gen[k], np.float64)).max()) for k in keys)
    record["meta"] = {
        "what": "greydanus/mnist1d notebooks/models.py + notebooks/train.py (train_model), unchanged",
        "repo_commit": a.commit or git_commit(a.repo),
        "date": datetime.date.today().isoformat(),
        "device": f"{platform.machine()} CPU, {os.cpu_count()} cores visible, torch threads {a.threads}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pkl_equals_make_dataset_float32": bool(same),
        "pkl_vs_make_dataset_max_abs_diff_float64": diff,
        "eval": "test accuracy (%) on the 1,000 test examples after the last step (train.py's test_acc[-1])",
        "updates": "train.py runs steps 0..total_steps inclusive: total_steps + 1 Adam updates",
    }
    done = {
        (r["model"], r["variant"], r["seed"], r["steps"], r.get("perm", ""), r.get("train_order", ""))
        for r in record["runs"]
    }
    train_order = os.path.basename(a.train_order)

    for model_name in a.models.split(","):
        for variant in a.variants.split(","):
            for seed in (int(s) for s in a.seeds.split(",")):
                args = train.get_model_args()
                args.total_steps = a.steps or args.total_steps
                args.eval_every = args.print_every = 1000
                perm = a.perm if variant == "shuffled" else ""
                key = (model_name, variant, seed, args.total_steps, perm, train_order)
                if key in done:
                    continue
                d = dict(data)
                if a.train_order:
                    rows = np.load(a.train_order)
                    d["x"], d["y"] = d["x"][rows], d["y"][rows]
                if variant == "shuffled":
                    order = permutation(a.perm, d["x"].shape[1])
                    d["x"], d["x_test"] = d["x"][:, order], d["x_test"][:, order]
                random.seed(seed)
                np.random.seed(seed)
                torch.manual_seed(seed)
                model = make_model(models, model_name, args)
                t0 = time.time()
                res = train.train_model(d, model, args)
                run = {
                    "model": model_name,
                    "variant": variant,
                    "perm": perm,
                    "train_order": train_order,
                    "seed": seed,
                    "steps": args.total_steps,
                    "test_acc": float(res["test_acc"][-1]),
                    "train_acc": float(res["train_acc"][-1]),
                    "test_acc_every_1000": [float(v) for v in res["test_acc"]],
                    "params": int(model.count_params()),
                    "seconds": round(time.time() - t0, 1),
                }
                print(json.dumps(run), flush=True)
                record["runs"].append(run)
                tmp = a.out + ".tmp"
                with open(tmp, "w") as f:
                    json.dump(record, f, indent=1)
                os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
