#!/usr/bin/env bash
# The test command: sets up .venv (Python 3.12) and runs the test suite on 8 simulated CPU devices.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/launch/setup.sh"
cd "$ROOT"
export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=8"
ruff check jaxdl kernels experiments tests
ruff format --check -q jaxdl kernels experiments tests
# two workers (the reference machine has 2 cores); a file stays on one worker (its module fixtures are shared)
exec python -m pytest -q -n "${JAXDL_TEST_WORKERS:-2}" --dist loadfile "$@"
