#!/usr/bin/env bash
# N processes of one JAX job on this machine: the multi-host code path (jax.distributed, per-process data
# slices, collective checkpoints) without a cluster.
#   bash launch/multiprocess.sh N --config=experiments/mnist1d/config.py:mlp,smoke --workdir=/tmp/mp [--config.a.b=v]
#
# CPU (no GPU found, or PLATFORM=cpu): each process simulates DEVICES_PER_PROCESS (default 1) CPU devices and the
#   processes talk over gloo.
# GPU (nvidia-smi lists GPUs, or PLATFORM=gpu): process i sees GPUs i*G .. i*G+G-1 through CUDA_VISIBLE_DEVICES,
#   G = GPUS_PER_PROCESS (default: number of GPUs / N).
# Each process gets JAXDL_COORDINATOR=localhost:$PORT (PORT: default a free one), JAXDL_NUM_PROCESSES=N and
# JAXDL_PROCESS_ID=i (see jaxdl/parallel/distributed.py). Process 0 prints to this terminal; process i > 0 writes
# $LOG_DIR/process_<i>.log (LOG_DIR: default a new temp dir). If a process fails, the others are stopped (TERM,
# then KILL after GRACE_S, default 5 s: JAX's preemption service catches TERM) and the script exits with the first
# failure's exit code; otherwise it exits 0.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${1:-}"
if ! [[ "$N" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: bash launch/multiprocess.sh N --config=... --workdir=... [more jaxdl.main flags]" >&2
  exit 2
fi
shift
source "$ROOT/launch/setup.sh"
cd "$ROOT"

PLATFORM="${PLATFORM:-auto}"
NUM_GPUS="$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)"
if [ "$PLATFORM" = auto ]; then
  if [ "${NUM_GPUS:-0}" -gt 0 ]; then PLATFORM=gpu; else PLATFORM=cpu; fi
fi
case "$PLATFORM" in
  cpu)
    DEVICES_PER_PROCESS="${DEVICES_PER_PROCESS:-1}"
    # drop any device count already in XLA_FLAGS (the test setup sets 8): each process gets its own
    BASE_XLA_FLAGS="$(sed -E 's/--xla_force_host_platform_device_count=[0-9]+//g' <<<"${XLA_FLAGS:-}")"
    ;;
  gpu)
    GPUS_PER_PROCESS="${GPUS_PER_PROCESS:-$((NUM_GPUS / N))}"
    if [ "$GPUS_PER_PROCESS" -lt 1 ] || [ $((GPUS_PER_PROCESS * N)) -gt "$NUM_GPUS" ]; then
      echo "[multiprocess] $N processes x $GPUS_PER_PROCESS GPUs do not fit the $NUM_GPUS GPUs of this machine" >&2
      exit 2
    fi
    ;;
  *)
    echo "[multiprocess] PLATFORM=$PLATFORM: use auto, cpu or gpu" >&2
    exit 2
    ;;
esac
PORT="${PORT:-$(python -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')}"
LOG_DIR="${LOG_DIR:-$(mktemp -d -t jaxdl_multiprocess.XXXXXX)}"
mkdir -p "$LOG_DIR"
echo "[multiprocess] $N processes on $PLATFORM, coordinator localhost:$PORT, logs of processes 1..$((N - 1)) in $LOG_DIR" >&2

pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
}
trap 'stop_all; exit 130' INT TERM

for ((i = 0; i < N; i++)); do
  (
    export JAXDL_COORDINATOR="localhost:$PORT" JAXDL_NUM_PROCESSES="$N" JAXDL_PROCESS_ID="$i"
    if [ "$PLATFORM" = cpu ]; then
      export JAX_PLATFORMS=cpu XLA_FLAGS="$BASE_XLA_FLAGS --xla_force_host_platform_device_count=$DEVICES_PER_PROCESS"
    else
      export CUDA_VISIBLE_DEVICES="$(seq -s, $((i * GPUS_PER_PROCESS)) $((i * GPUS_PER_PROCESS + GPUS_PER_PROCESS - 1)))"
    fi
    if [ "$i" -eq 0 ]; then
      exec python -m jaxdl.main "$@"
    else
      exec python -m jaxdl.main "$@" >"$LOG_DIR/process_$i.log" 2>&1
    fi
  ) &
  pids+=("$!")
done

# Wait for all; on the first failure stop the rest (a peer left alone would wait in a collective until JAX's
# heartbeat timeout).
rc=0
first_failed=""
kill_at=""
running="$N"
declare -A finished=()
while [ "$running" -gt 0 ]; do
  for i in "${!pids[@]}"; do
    [ -n "${finished[$i]:-}" ] && continue
    kill -0 "${pids[$i]}" 2>/dev/null && continue
    if wait "${pids[$i]}"; then code=0; else code=$?; fi
    finished[$i]=1
    running=$((running - 1))
    if [ "$code" -ne 0 ] && [ -z "$first_failed" ]; then
      rc="$code"
      first_failed="$i"
      echo "[multiprocess] process $i exited with code $code; stopping the other processes" >&2
      if [ "$i" -ne 0 ]; then
        echo "[multiprocess] last lines of $LOG_DIR/process_$i.log:" >&2
        tail -n 20 "$LOG_DIR/process_$i.log" >&2 || true
      fi
      stop_all
      kill_at=$((SECONDS + ${GRACE_S:-5}))
    fi
  done
  if [ -n "$kill_at" ] && [ "$SECONDS" -ge "$kill_at" ]; then
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    kill_at=""
  fi
  [ "$running" -gt 0 ] && sleep 0.5
done
exit "$rc"
