"""Metric writers: `metrics.jsonl` + TensorBoard events, a progress bar, `config.json` and `environment.json`.

Only process 0 writes. On resume, `MetricWriter(..., resume_step=s)` drops records past step `s` (written by
the run that crashed after its last checkpoint), so the file reads as one uninterrupted run.
"""

import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata

import jax
import numpy as np
from tqdm import tqdm

PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "tensorflow-datasets",
    "numpy",
    "ml-collections",
)


# Wall-clock metrics the trainer logs beside the losses (they differ between identical runs): throughput, the
# fraction of each logging window spent waiting for input, and one synchronized step's time per window.
TIMING_METRICS = ("train/steps_per_sec", "train/input_wait_fraction", "train/step_ms")


class MetricWriter:
    def __init__(self, workdir: str, *, enabled: bool = True, resume_step: int | None = None):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        if resume_step is not None and os.path.exists(self.path):
            with open(self.path) as f:
                kept = [line for line in f if line.strip() and json.loads(line)["step"] <= resume_step]
            with open(self.path + ".tmp", "w") as f:
                f.writelines(kept)
            os.replace(self.path + ".tmp", self.path)
        elif resume_step is None and os.path.exists(self.path):
            os.remove(self.path)  # a fresh run in a workdir without checkpoints starts a fresh log
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for k, v in scalars.items():
            self._tb.add_scalar(k, float(v), int(step))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def _git_commit() -> str:
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        out = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict:
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "git_commit": _git_commit(),
        "argv": sys.argv,
    }


def write_run_files(workdir: str, config_dict: dict) -> None:
    """`config.json` and `environment.json` in the workdir."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(config_dict, f, indent=2, default=str)
    with open(os.path.join(workdir, "environment.json"), "w") as f:
        json.dump(environment(), f, indent=2)


class Progress:
    """A tqdm bar showing step/s and the latest loss; a no-op when disabled."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = tqdm(
            total=total,
            initial=initial,
            disable=not enabled,
            unit="step",
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def update(self, n: int, scalars: Mapping[str, float] | None = None) -> None:
        self.bar.update(n)
        if scalars:
            self.bar.set_postfix({k.split("/")[-1]: f"{v:.4g}" for k, v in scalars.items()}, refresh=False)

    def close(self) -> None:
        self.bar.close()


def mean_over_steps(records: list[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """Averages per-step device metrics fetched together (one host sync per log interval)."""
    fetched = jax.device_get(records)
    return {k: float(np.mean([r[k] for r in fetched])) for k in fetched[0]}
