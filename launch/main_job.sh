#!/usr/bin/env bash
# The main job: sets up .venv and trains the MNIST-1D CNN (paper: 94 % test accuracy), printing the metric.
# Extra arguments go to jaxdl.main, e.g. --config.train.steps=1000. WORKDIR=dir resumes or reuses a workdir.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/launch/setup.sh"
cd "$ROOT"
exec python -m jaxdl.main --config=experiments/mnist1d/config.py:cnn --workdir="${WORKDIR:-workdirs/mnist1d_cnn_$(date +%Y%m%d_%H%M%S)}" "$@"
