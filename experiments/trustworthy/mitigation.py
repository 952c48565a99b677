"""Fairness mitigation by group reweighting: the MovieLens bias audit (fold u1, `config.py:audit`) trained with and
without the rating task's `reweight_by` option, audited by gender and age band on u1.test; writes mitigation.json
(per run: arm, seed, task options, wall time, every final metric; summary mean ± sample std over seeds; device,
date, versions).

Command: nice python experiments/trustworthy/mitigation.py --out=experiments/trustworthy --seeds=0,1
         python experiments/trustworthy/mitigation.py --out=experiments/trustworthy --table     # README table
This file is also the arms' config: each run is
`python -m jaxdl.main --config=experiments/trustworthy/mitigation.py:<arm>,seed=S --workdir=DIR`, the audit config
(`config.py:audit,seed=S`) with the task options of the arm added (and `config.task.dataset=movielens_u1`, where the
weights are counted):
  none          the audit run as it is (unweighted squared error)
  gender        reweight_by=gender, group_weights=inverse_frequency (each gender's ratings weigh the same in total)
  age_band      reweight_by=age_band, group_weights=inverse_frequency
  gender_kc     reweight_by=gender, group_weights=kamiran_calders (gender independent of the rating value)
`--steps=N` (config arg `steps=N`) overrides the audit's 1,200 steps (the JSON records the steps of every run).
Measured (2 seeds, 49–125 s a run on the loaded 2-core CPU): see mitigation.json and the README section.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

ARMS = {
    "none": {},
    "gender": dict(reweight_by="gender", group_weights="inverse_frequency"),
    "age_band": dict(reweight_by="age_band", group_weights="inverse_frequency"),
    "gender_kc": dict(reweight_by="gender", group_weights="kamiran_calders"),
}
SUMMARY = (
    "rmse",
    "mae",
    "gender/rmse/F",
    "gender/rmse/M",
    "gender/rmse_gap",
    "gender/demographic_parity_difference",
    "gender/equalized_odds_difference",
    "gender/calibration_gap",
    "age/rmse_gap",
    "age/demographic_parity_difference",
    "age/equalized_odds_difference",
    "age/calibration_gap",
)


def get_config(arg: str = "none"):
    """The audit config of `config.py` with the reweighting options of arm `arg` (`<arm>[,seed=S][,steps=N]`)."""
    from jaxdl import config as config_lib

    a = config_lib.parse_arg(arg, arm=tuple(ARMS), seed=0, steps=0)
    from experiments.trustworthy.config import get_config as audit_config

    c = audit_config(f"audit,seed={a.seed}" + (f",steps={a.steps}" if a.steps else "") + (",smoke" if a.smoke else ""))
    c.task.update(ARMS[a.arm] | (dict(dataset="movielens_u1") if ARMS[a.arm] else {}))
    return c


def summarize(results: dict) -> dict:
    import numpy as np

    out = {}
    for arm in ARMS:
        runs = [r for r in results["runs"].values() if r["arm"] == arm]
        if runs:
            vals = {k: np.array([r["final"][f"eval/{k}"] for r in runs]) for k in SUMMARY}
            out[arm] = {
                k: dict(mean=float(v.mean()), std=float(v.std(ddof=1)) if len(v) > 1 else None, n=len(v))
                for k, v in vals.items()
            }
    return out


def table(results: dict) -> str:
    cols = SUMMARY
    out = ["| arm | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for arm, s in results.get("summary", {}).items():
        cell = lambda d: f"{d['mean']:.4f}" + (f" ± {d['std']:.4f}" if d["std"] is not None else "")
        out.append(f"| {arm} (n={s['rmse']['n']}) | " + " | ".join(cell(s[k]) for k in cols) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="experiments/trustworthy")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--steps", type=int, default=0)
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    path = os.path.join(args.out, "mitigation.json")
    results = json.load(open(path)) if os.path.exists(path) else {"runs": {}}
    if args.table:
        print(table(results))
        return
    for arm in args.arms.split(","):
        if arm not in ARMS:
            raise ValueError(f"--arms: {arm!r} is not one of {list(ARMS)}")

    import flax
    import jax
    import optax

    from jaxdl.train import train_and_evaluate

    results.update(
        device=f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores shared with other jobs, "
        "1 JAX device",
        versions=dict(
            python=platform.python_version(), jax=jax.__version__, flax=flax.__version__, optax=optax.__version__
        ),
    )
    root = tempfile.mkdtemp(prefix="mitigation_")
    for seed in [int(s) for s in args.seeds.split(",")]:
        for arm in args.arms.split(","):
            key = f"{arm},seed={seed}"
            if key in results["runs"]:
                continue
            arg = f"{arm},seed={seed}" + (f",steps={args.steps}" if args.steps else "")
            c = get_config(arg)
            t0 = time.time()
            final = train_and_evaluate(c, os.path.join(root, key.replace(",", "_")), devices=jax.devices()[:1])
            results["runs"][key] = dict(
                arm=arm,
                seed=seed,
                command=f"python -m jaxdl.main --config=experiments/trustworthy/mitigation.py:{arg} --workdir=DIR",
                task=c.task.to_dict(),
                steps=c.train.steps,
                wall_s=round(time.time() - t0, 1),
                date=datetime.date.today().isoformat(),
                final={k: float(v) for k, v in final.items()},
            )
            results["summary"] = summarize(results)
            json.dump(results, open(path, "w"), indent=1)
            print(key, {k: round(results["runs"][key]["final"][f"eval/{k}"], 4) for k in SUMMARY[:5]}, flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
