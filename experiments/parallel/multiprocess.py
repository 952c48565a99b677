"""1 process × 4 CPU devices vs 2 processes × 2 CPU devices on the same config: train losses and final eval.

    python experiments/parallel/multiprocess.py [--out experiments/parallel/multiprocess.json]

Runs the two commands of launch/README.md (launch/local.sh with 4 simulated devices; launch/multiprocess.sh 2 with
DEVICES_PER_PROCESS=2, which goes through jax.distributed, per-process data slices and collective checkpoints),
reads both runs' metrics.jsonl and writes the train losses at every logged step, their largest relative
difference and the final eval metrics to JSON. ~30 s on 2 CPU cores. tests/test_distributed.py asserts the
equality; this script records the measured figures launch/README.md quotes.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "experiments/mnist1d/config.py:mlp,smoke"


def run(cmd: list[str], env: dict) -> str:
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return [line for line in out.stdout.splitlines() if line.startswith("final ")][-1]


def losses(workdir: str) -> dict[int, float]:
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "multiprocess.json"))
    args = p.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    flags = [f"--config={CONFIG}", "--config.train.progress=False"]
    with tempfile.TemporaryDirectory() as tmp:
        one, two = os.path.join(tmp, "one"), os.path.join(tmp, "two")
        env1 = base | {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
        final1 = run(["bash", "launch/local.sh", *flags, f"--workdir={one}"], env1)
        final2 = run(
            ["bash", "launch/multiprocess.sh", "2", *flags, f"--workdir={two}"], base | {"DEVICES_PER_PROCESS": "2"}
        )
        a, b = losses(one), losses(two)
    if a.keys() != b.keys():
        sys.exit(f"the runs logged different steps: {sorted(a)} vs {sorted(b)}")
    rel = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
    result = {
        "date": datetime.date.today().isoformat(),
        "command": "python experiments/parallel/multiprocess.py",
        "config": CONFIG,
        "train_loss": {str(s): {"1proc_x4dev": a[s], "2proc_x2dev": b[s]} for s in sorted(a)},
        "max_relative_difference": rel,
        "final_1proc_x4dev": final1,
        "final_2proc_x2dev": final2,
        "python": sys.version.split()[0],
        "machine": f"{os.cpu_count()} CPU cores",
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
