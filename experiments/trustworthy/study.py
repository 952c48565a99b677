"""Runs the trustworthy-learning arms of `config.py` one after another and writes results.json + results.csv.

Command: nice python experiments/trustworthy/study.py --out=experiments/trustworthy [--arms=standard,pgd,dp:1,...]
Each arm: `python -m jaxdl.main --config=experiments/trustworthy/config.py:<arg> --workdir=DIR` in-process (the same
trainer call); results.json holds, per arm, the exact command, the final metrics, the wall time, and for the file
the device, date, versions and seed. One seed (0) per arm: n = 1, no error bars.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

DEFAULT_ARMS = "standard,pgd,dp:1,dp:2,dp:3"


def arm_arg(arm: str) -> str:
    """'dp:2' -> 'dp,epsilon=2'; 'dp:3:900:0.1' -> 'dp,epsilon=3,steps=900,lr=0.1'; 'fedsgd+noniid+lr=1' ->
    'fedsgd,noniid,lr=1' (any config arg, '+' for ',')."""
    if "+" in arm:
        return arm.replace("+", ",")
    name, eps, steps, lr = (arm.split(":") + ["", "", ""])[:4]
    return name + "".join(f",{k}={v}" for k, v in (("epsilon", eps), ("steps", steps), ("lr", lr)) if v)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="experiments/trustworthy")
    parser.add_argument("--arms", default=DEFAULT_ARMS)
    parser.add_argument("--workdir", default="")
    parser.add_argument("--table", action="store_true", help="print the README tables of results.json and exit")
    parser.add_argument("--csv", action="store_true", help="rewrite the CSVs from results.json and exit")
    args = parser.parse_args()
    if args.table or args.csv:
        results = json.load(open(os.path.join(args.out, "results.json")))
        if args.csv:
            write_csv(results, os.path.join(args.out, "results.csv"))
        if args.table:
            print(tables(results))
        return

    import dp_accounting  # noqa: F401  (its version is recorded)
    import flax
    import jax
    import optax

    from experiments.trustworthy.config import get_config
    from jaxdl.train import train_and_evaluate

    root = args.workdir or tempfile.mkdtemp(prefix="trustworthy_")
    path = os.path.join(args.out, "results.json")
    results = json.load(open(path)) if os.path.exists(path) else {"runs": {}}
    results["meta"] = {
        "device": f"{jax.devices()[0].device_kind} x{jax.device_count()} ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores shared with other jobs)",
        "date": datetime.date.today().isoformat(),
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "flax": flax.__version__,
            "optax": optax.__version__,
            "dp_accounting": _version("dp-accounting"),
        },
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "study_command": "nice python experiments/trustworthy/study.py --out=experiments/trustworthy",
    }
    for arm in args.arms.split(","):
        arg = arm_arg(arm)
        config = get_config(arg)
        workdir = os.path.join(root, arm.replace(":", "_").replace("+", "_").replace("=", ""))
        t0 = time.perf_counter()
        final = train_and_evaluate(config, workdir)
        wall = time.perf_counter() - t0
        results["runs"][arm] = {
            "command": f"python -m jaxdl.main --config=experiments/trustworthy/config.py:{arg} --workdir=DIR",
            "task": config.task.to_dict(),
            "model": config.model.to_dict(),
            "eval_split": f"{config.data.name}:{config.data.eval_split}",
            "steps": config.train.steps,
            "lr": config.optim.lr,
            "seed": config.seed,
            "wall_s": round(wall, 1),
            "final": final,
            "curve": eval_curve(workdir),
        }
        with open(path, "w") as f:  # after every arm: a partial study is still a record
            json.dump(results, f, indent=1)
        print(arm, json.dumps(final), f"{wall:.0f} s", flush=True)
    write_csv(results, os.path.join(args.out, "results.csv"))


def eval_curve(workdir: str) -> list[list[float]]:
    """[[step, eval/accuracy], ...] from the run's metrics.jsonl (the evaluations at its `eval_every` cadence)."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [[r["step"], r["eval/accuracy"]] for r in rows if "eval/accuracy" in r]


def rounds_to(curve: list, target: float) -> str:
    """The first evaluated round whose test accuracy reaches `target`, or '> last round'."""
    hit = [step for step, acc in curve if acc >= target]
    return str(hit[0]) if hit else f"> {curve[-1][0]}"


FED_TARGETS = (0.75, 0.80, 0.85)


def write_csv(results: dict, path: str) -> None:
    """One row per (arm, attack, ε): clean accuracy, robust accuracy; dp rows add σ and the accountant's ε."""
    rows = []
    for arm, r in results["runs"].items():
        f = r["final"]
        if arm == "audit" or arm.startswith("fed"):
            continue
        for attack in ("pgd", "fgsm"):
            for key, acc in sorted(f.items()):
                prefix = f"eval/{attack}/accuracy_eps"
                if key.startswith(prefix):
                    rows.append(
                        {
                            "arm": arm,
                            "attack": attack,
                            "eps": float(key[len(prefix) :]),
                            "robust_accuracy": acc,
                            "clean_test_accuracy": f["eval/accuracy"],
                            "dp_epsilon": f.get("eval/privacy/epsilon", ""),
                            "dp_noise_multiplier": r["task"].get("noise_multiplier", ""),
                            "steps": r["steps"],
                            "seed": r["seed"],
                            "command": r["command"],
                        }
                    )
    _write(rows, path)
    dp = [
        {
            "arm": arm,
            "steps": r["steps"],
            "lr": r.get("lr", 0.5),  # arms run before the lr arg existed used the default 0.5
            "activation": r.get("model", {}).get("activation", "relu"),
            "eval_split": r.get("eval_split", "fashion_mnist:test"),
            "noise_multiplier": r["task"]["noise_multiplier"],
            "clip_norm": r["task"]["clip_norm"],
            "expected_batch_size": r["task"]["expected_batch_size"],
            "sampling_rate": r["final"]["eval/privacy/sampling_rate"],
            "delta": r["task"]["delta"],
            "epsilon_rdp": r["final"]["eval/privacy/epsilon"],
            "accuracy": r["final"]["eval/accuracy"],  # on eval_split (validation for the lr search)
            "wall_s": r["wall_s"],
            "seed": r["seed"],
            "command": r["command"],
        }
        for arm, r in results["runs"].items()
        if arm.startswith("dp")
    ]
    if dp:
        _write(dp, os.path.join(os.path.dirname(path), "dp.csv"))
    fed = [
        {"arm": arm, "round": step, "test_accuracy": acc, "command": r["command"], "seed": r["seed"]}
        for arm, r in results["runs"].items()
        if arm.startswith("fed")
        for step, acc in r["curve"]
    ]
    if fed:
        _write(fed, os.path.join(os.path.dirname(path), "federated.csv"))
    if "audit" in results["runs"]:  # one row per (attribute, group): the audit's per-group metrics
        r = results["runs"]["audit"]
        audit_rows = {}
        for key, value in r["final"].items():
            parts = key.split("/")  # eval/<gender|age>/<metric>/<group>
            if len(parts) == 4 and parts[1] in ("gender", "age"):
                row = audit_rows.setdefault((parts[1], parts[3]), {"attribute": parts[1], "group": parts[3]})
                row[parts[2]] = value
        rows = [dict(row, command=r["command"], seed=r["seed"]) for row in audit_rows.values()]
        _write(rows, os.path.join(os.path.dirname(path), "audit.csv"))


def _write(rows: list[dict], path: str) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        w.writeheader()
        w.writerows(rows)


def tables(results: dict) -> str:
    """The README's markdown tables (accuracy in %, from results.json)."""
    runs, out = results["runs"], []
    robust = [a for a in ("standard", "pgd") if a in runs]
    if robust:
        eps = sorted(float(k.rsplit("eps", 1)[1]) for k in runs[robust[0]]["final"] if k.startswith("eval/pgd/acc"))
        out.append("| model | attack | " + " | ".join(f"ε={e:g}" for e in eps) + " |")
        out.append("|---|---|" + "---|" * len(eps))
        for arm in robust:
            for attack in ("pgd", "fgsm"):
                f = runs[arm]["final"]
                cells = [f"{100 * f[f'eval/{attack}/accuracy_eps{e:g}']:.1f}" for e in eps]
                out.append(f"| {arm} | {attack.upper()} | " + " | ".join(cells) + " |")
        out.append("")
    dp = [a for a in runs if a.startswith("dp")]
    if dp:
        out.append(
            "| run | act | batch | C | steps | lr | σ (noise multiplier) | ε (RDP, δ=1e-5) | evaluated on | accuracy % "
            "| wall s |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for arm in dp:
            r, f, t = runs[arm], runs[arm]["final"], runs[arm]["task"]
            act = r.get("model", {}).get("activation", "relu")
            row = [arm, act, t["expected_batch_size"], t["clip_norm"], r["steps"], r.get("lr", 0.5)]
            row += [t["noise_multiplier"], f"{f['eval/privacy/epsilon']:.3f}"]
            row += [r.get("eval_split", "fashion_mnist:test").split(":")[-1]]
            out.append("| " + " | ".join(map(str, [*row, f"{100 * f['eval/accuracy']:.1f}", r["wall_s"]])) + " |")
        out.append("")
        groups: dict[str, list[float]] = {}  # arms equal but for the seed
        for arm in dp:
            groups.setdefault(re.sub(r"\+seed=\d+", "", arm), []).append(100 * runs[arm]["final"]["eval/accuracy"])
        for base, accs in groups.items():
            if len(accs) > 1:
                out.append(f"{base}: {np.mean(accs):.2f} ± {np.std(accs, ddof=1):.2f} % (n = {len(accs)} seeds)")
        out.append("")
    fed = [a for a in runs if a.startswith("fed")]
    if fed:
        out.append("| run | partition | E | b | local lr | " + " | ".join(f"rounds to {t:.0%}" for t in FED_TARGETS))
        out[-1] += " | accuracy at last round | wall s |"
        out.append("|---|---|---|---|---|" + "---|" * len(FED_TARGETS) + "---|---|")
        for arm in fed:
            r, t = runs[arm], runs[arm]["task"]
            cells = [arm, t["partition"], t["local_epochs"], t["local_batch_size"], t["local_lr"]]
            cells += [rounds_to(r["curve"], x) for x in FED_TARGETS]
            cells += [f"{100 * r['curve'][-1][1]:.1f} (round {r['curve'][-1][0]})", r["wall_s"]]
            out.append("| " + " | ".join(map(str, cells)) + " |")
        out.append("")
    if "audit" in runs:
        f = runs["audit"]["final"]
        groups = sorted({k.split("/")[3] for k in f if k.startswith("eval/") and len(k.split("/")) == 4})
        out.append(f"test RMSE {f['eval/rmse']:.4f}, MAE {f['eval/mae']:.4f}")
        out.append("")
        out.append("| attribute | group | ratings | RMSE | like-accuracy | selection rate | TPR | FPR | calibration |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for attr in ("gender", "age"):
            for g in groups:
                if f"eval/{attr}/count/{g}" not in f:
                    continue
                m = lambda k, a=attr, g=g: f[f"eval/{a}/{k}/{g}"]
                cells = [f"{m('count'):.0f}", f"{m('rmse'):.4f}", f"{m('accuracy'):.3f}"]
                cells += [f"{m(k):.3f}" for k in ("selection_rate", "tpr", "fpr")] + [f"{m('calibration'):+.3f}"]
                out.append(f"| {attr} | {g} | " + " | ".join(cells) + " |")
        out.append("")
        out.append("| attribute | demographic parity diff | equalized odds diff | RMSE gap | calibration gap |")
        out.append("|---|---|---|---|---|")
        for attr in ("gender", "age"):
            keys = ("demographic_parity_difference", "equalized_odds_difference", "rmse_gap", "calibration_gap")
            out.append(f"| {attr} | " + " | ".join(f"{f[f'eval/{attr}/{k}']:.4f}" for k in keys) + " |")
    return "\n".join(out)


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    main()
