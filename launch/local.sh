#!/usr/bin/env bash
# One process on this machine (all its local devices): sets up .venv, then runs jaxdl.main with your arguments.
#   bash launch/local.sh --config=experiments/mnist1d/config.py:mlp,smoke --workdir=/tmp/smoke [--config.a.b=v ...]
# Launching the same command again resumes from the workdir's latest checkpoint.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/launch/setup.sh"
cd "$ROOT"
exec python -m jaxdl.main "$@"
