#!/usr/bin/env bash
# Cloud TPU VM pod slice (v4, v5e, v5p, v6e, ...): the same command on every worker through
# `gcloud compute tpus tpu-vm ssh --worker=all`. jax.distributed finds the slice through JAX's Cloud TPU detection
# (worker number and worker endpoints from the VM metadata); no flags needed.
#   TPU=my-v5e-32 ZONE=us-west4-a CONFIG=experiments/mnist1d/config.py:cnn WORKDIR=/mnt/shared/runs/cnn \
#     bash launch/tpu_pod.sh [--config.a.b=v ...]
# Env: PROJECT (gcloud project; default gcloud's), REPO (the repository on the workers, relative to the home
#   directory; default jaxdl), SYNC=1 (first copy this checkout's tracked files to REPO on every worker),
#   TPU_PIP (default "jax[tpu]": installed into the workers' .venv after launch/setup.sh; empty = skip).
# The workers need python3.12 (launch/setup.sh). WORKDIR must be one directory shared by all workers (NFS/Filestore
# or a gcsfuse mount): every worker writes its shards of each checkpoint there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TPU="${TPU:?set TPU=<TPU VM name>}"
ZONE="${ZONE:?set ZONE=<zone of the TPU VM>}"
CONFIG="${CONFIG:?set CONFIG=experiments/<study>/<file>.py:<arg>}"
WORKDIR="${WORKDIR:?set WORKDIR=<directory shared by all workers>}"
REPO="${REPO:-jaxdl}"
TPU_PIP="${TPU_PIP-jax[tpu]}"
gcloud_args=(--zone "$ZONE")
if [ -n "${PROJECT:-}" ]; then gcloud_args+=(--project "$PROJECT"); fi

if [ "${SYNC:-0}" = 1 ]; then
  tarball="$(mktemp -t jaxdl_src.XXXXXX).tar.gz"
  git -C "$ROOT" ls-files -z | tar -C "$ROOT" --null -T - -czf "$tarball"
  gcloud compute tpus tpu-vm scp "$tarball" "$TPU:jaxdl_src.tar.gz" --worker=all "${gcloud_args[@]}"
  gcloud compute tpus tpu-vm ssh "$TPU" --worker=all "${gcloud_args[@]}" \
    --command "mkdir -p $(printf %q "$REPO") && tar -xzf jaxdl_src.tar.gz -C $(printf %q "$REPO")"
  rm -f "$tarball"
fi

remote="cd $(printf %q "$REPO") && source launch/setup.sh"
if [ -n "$TPU_PIP" ]; then remote+=" && pip install -q $(printf %q "$TPU_PIP")"; fi
remote+=" && exec python -m jaxdl.main --config=$(printf %q "$CONFIG") --workdir=$(printf %q "$WORKDIR")"
for arg in "$@"; do remote+=" $(printf %q "$arg")"; done
echo "[tpu_pod] on every worker of $TPU: $remote" >&2
exec gcloud compute tpus tpu-vm ssh "$TPU" --worker=all "${gcloud_args[@]}" --command "$remote"
