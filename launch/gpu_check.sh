#!/usr/bin/env bash
# The GPU check, one command on a GPU machine (sized to finish in under 9 minutes on one H100):
#   bash launch/gpu_check.sh OUT_DIR [--dry-run] [--wheels DIR] [--python PY] [--tests gpu|all]
#   bash launch/gpu_check.sh --fetch-wheels DIR      # on a machine with a package registry: wheels to carry along
# Steps, each under its own `timeout` (and all under one deadline): install the [gpu] extra and the project's
# dependencies if missing (from --wheels DIR with pip --no-index when the machine has no registry), the GPU tests
# (JAXDL_TEST_BACKEND=gpu, `-m gpu`: compiled kernels against the references, impl="auto" choosing them),
# `python -m kernels.bench attention`, `python -m kernels.bench int8_matmul`, experiments/gpt_mfu/run.py and the
# attention autotune (on a copy of the table). Every table and log goes to OUT_DIR, with summary.md (each step's
# command, exit status, seconds, and the tables) and gpu_check.tar.gz (everything). --dry-run prints the commands.
# Pins: jax 0.11.x + triton 3.6 -> jax-triton==0.3.1; jax >= 0.11 + triton >= 3.7 (newest: jax 0.12.1, triton
# 3.9.0) -> jax-triton==0.4.1. The jax CUDA wheels themselves are the machine's (not installed here).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

OUT="" DRY=0 WHEELS="" PY="${JAXDL_PYTHON:-}" FETCH="" TESTS="gpu"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --wheels) WHEELS="$2"; shift ;;
    --python) PY="$2"; shift ;;
    --tests) TESTS="$2"; shift ;;
    --fetch-wheels) FETCH="$2"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $1" >&2; exit 2 ;;
    *) [ -z "$OUT" ] && OUT="$1" || { echo "gpu_check.sh: one OUT_DIR only" >&2; exit 2; } ;;
  esac
  shift
done
if [ -z "$PY" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY="$(command -v python3)"; fi
fi
case "$TESTS" in gpu) MARK="gpu" ;; all) MARK="gpu or portable" ;; *) echo "--tests gpu|all" >&2; exit 2 ;; esac

# Project dependencies the GPU image ('cuda', 2026-11, device/KINDS.md) lacks: (python module, distribution).
MISSING_ON_IMAGE="ml_collections:ml-collections tensorflow_datasets:tensorflow-datasets array_record:array-record
tensorboardX:tensorboardX mnist1d:mnist1d importlib_resources:importlib_resources"
# ... and their own dependencies the image lacks (what `--fetch-wheels` adds to the carried wheels).
FETCH_EXTRA="dm-tree docstring-parser googleapis-common-protos immutabledict promise simple-parsing
tensorflow-metadata termcolor toml"

if [ -n "$FETCH" ]; then  # runs here, with this checkout's venv: the versions the tests passed with
  mkdir -p "$FETCH"
  pins=()
  for pair in $MISSING_ON_IMAGE; do pins+=("${pair#*:}"); done
  for dist in $FETCH_EXTRA; do pins+=("$dist"); done
  resolved=()
  for p in "${pins[@]}"; do
    v="$("$PY" -c "import importlib.metadata as m; print(m.version('$p'))" 2>/dev/null)" && resolved+=("$p==$v") \
      || resolved+=("$p")
  done
  for batch in "jax-triton==0.3.1" "jax-triton==0.4.1" "${resolved[*]}"; do  # one pip call per jax-triton version
    echo "+ $PY -m pip wheel --no-deps -w $FETCH $batch"
    [ "$DRY" = 1 ] || "$PY" -m pip wheel -q --no-deps -w "$FETCH" $batch || exit 1
  done
  [ "$DRY" = 1 ] && exit 0
  du -sh "$FETCH"; ls "$FETCH"
  exit 0
fi

[ -n "$OUT" ] || { echo "usage: bash launch/gpu_check.sh OUT_DIR [--dry-run] [--wheels DIR] [--python PY]" >&2; exit 2; }
if [ -z "$WHEELS" ]; then
  for d in "$ROOT/wheels" "$ROOT/.whl"; do [ -d "$d" ] && WHEELS="$d" && break; done
fi
PIP=("$PY" -m pip install -q)
[ -n "$WHEELS" ] && PIP+=(--no-index --find-links "$WHEELS")

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 JAXDL_TEST_BACKEND=gpu
export TRITON_DEFAULT_FP_FUSION=1  # Triton 3.9 warns when unset; fusion on is what the kernels were checked with
START=$(date +%s)
DEADLINE=$((START + 525))  # the whole script stays under 9 minutes
[ "$DRY" = 1 ] || mkdir -p "$OUT"
SUMMARY="$OUT/summary.md"
STATUS=0

# step NAME BUDGET_S LOG -- CMD...: run CMD under `timeout` (its budget, cut to the time left), log to OUT/LOG.
quote() {  # the command as one could paste it: arguments quoted only where the shell needs it
  local a out=""
  for a in "$@"; do
    if [[ "$a" =~ ^[A-Za-z0-9_,.=/:+@%-]+$ ]]; then out+="$a "; else out+="'${a//\'/\'\\\'\'}' "; fi
  done
  printf '%s' "${out% }"
}

step() {
  local name="$1" budget="$2" log="$3"; shift 4
  local cmd; cmd="$(quote "$@")"
  if [ "$DRY" = 1 ]; then
    echo "+ timeout -k 10 $budget $cmd > $OUT/$log 2>&1"
    return 0
  fi
  local left=$((DEADLINE - $(date +%s)))
  [ "$budget" -gt "$left" ] && budget="$left"
  if [ "$budget" -lt 20 ]; then
    echo "| $name | skipped: the 9-minute budget is spent | — | \`$cmd\` |" >> "$SUMMARY"
    echo "[gpu_check] $name: skipped (budget spent)"; STATUS=1; return 0
  fi
  echo "[gpu_check] $name (timeout ${budget}s): $cmd"
  local t0 rc=0; t0=$(date +%s)
  timeout -k 10 "$budget" "$@" > "$OUT/$log" 2>&1 || rc=$?
  local dt=$(($(date +%s) - t0)) what="exit $rc"
  [ "$rc" = 124 ] && what="timed out after ${budget}s (partial results kept)"
  [ "$rc" = 0 ] || STATUS=1
  echo "| $name | $what | ${dt} s | \`$cmd\` |" >> "$SUMMARY"
  echo "[gpu_check] $name: $what in ${dt}s; tail of $log:"; tail -n 5 "$OUT/$log" | sed 's/^/    /'
}

# --- environment and installation ------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
  echo "# gpu_check dry run: python $PY, wheels ${WHEELS:-<none: the registry>}, out $OUT"
  echo "+ cd $ROOT"
  echo "+ export PYTHONPATH=$PYTHONPATH PYTHONUNBUFFERED=1 JAXDL_TEST_BACKEND=gpu TRITON_DEFAULT_FP_FUSION=1"
else
  {
    echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+changes')"
    echo; echo '```'; nvidia-smi -L 2>/dev/null | head -4 || echo "no nvidia-smi"; echo "python: $PY"
    "$PY" -c "import jax, sys; print('jax', jax.__version__, jax.devices())" 2>&1 | tail -1
    echo '```'; echo
    echo "| step | result | time | command |"; echo "|---|---|---|---|"
  } > "$SUMMARY"
fi
has() { "$PY" -c "import $1" > /dev/null 2>&1; }
TRITON_VERSION="$("$PY" -c 'import triton; print(triton.__version__)' 2>/dev/null || echo none)"
case "$TRITON_VERSION" in
  none) JT="" ;;
  3.[0-6]|3.[0-6].*) JT="jax-triton==0.3.1" ;;  # jax-triton 0.4 needs triton >= 3.7
  *) JT="jax-triton==0.4.1" ;;
esac
install=()
if ! has jax_triton; then
  [ -n "$JT" ] || { echo "gpu_check.sh: no triton in $PY (the GPU image ships it; else pip install triton)" >&2; exit 1; }
  install+=("$JT")
fi
for pair in $MISSING_ON_IMAGE; do has "${pair%%:*}" || install+=("${pair#*:}"); done
if [ ${#install[@]} -gt 0 ]; then
  step install 45 install.log -- "${PIP[@]}" "${install[@]}"
elif [ "$DRY" = 1 ]; then
  echo "# nothing to install: jax_triton and the project's dependencies import with $PY"
fi

# --- the GPU tests ---------------------------------------------------------------------------------------------
step tests 140 tests.log -- "$PY" -m pytest -q -p no:cacheprovider -m "$MARK" -rs --continue-on-collection-errors \
  --junitxml="$OUT/tests.xml" \
  tests/test_attention_kernels.py tests/test_int8_matmul.py tests/test_triton_call.py tests/test_attention_api.py

# --- benchmarks ------------------------------------------------------------------------------------------------
step bench_attention 110 bench_attention.log -- "$PY" -m kernels.bench attention --out "$OUT" --repeats 10
step bench_int8_matmul 65 bench_int8_matmul.log -- "$PY" -m kernels.bench int8_matmul --out "$OUT" --repeats 10
step gpt_mfu 90 gpt_mfu.log -- "$PY" experiments/gpt_mfu/run.py --impls=auto,cudnn --steps=10

# --- attention autotune (one shape class, on a copy of the table) -----------------------------------------------
[ "$DRY" = 1 ] && echo "+ cp kernels/attention/autotune.json $OUT/autotune.json" \
  || cp kernels/attention/autotune.json "$OUT/autotune.json"
step tune 75 tune.log -- "$PY" -m kernels.attention.tune --head-dims 128 --dtypes bfloat16 --causal true \
  --seqs 4096 --quick --repeats 10 --table "$OUT/autotune.json"

# --- summary ---------------------------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
  echo "+ summary: $OUT/summary.md (steps, tables, test counts) and $OUT/gpu_check.tar.gz (everything)"
  exit 0
fi
{
  echo; echo "Total: $(($(date +%s) - START)) s."
  echo; echo "## Tests"; echo; echo '```'; grep -E "[0-9]+ (passed|failed|errors?|skipped)( |,|$)" "$OUT/tests.log" | tail -1; echo '```'
  for t in attention int8_matmul; do
    [ -f "$OUT/$t.md" ] && { echo; echo "## $t"; echo; cat "$OUT/$t.md"; }
  done
  echo; echo "## GPT MFU"; echo; grep -E "^\||^jax " "$OUT/gpt_mfu.log"
  echo; echo "## Autotune"; echo; echo '```'; grep -vE "^    " "$OUT/tune.log" | tail -5; echo '```'
} >> "$SUMMARY"
tar -czf "$OUT/gpu_check.tar.gz" -C "$OUT" --exclude gpu_check.tar.gz . 2>/dev/null
echo "[gpu_check] done in $(($(date +%s) - START))s: $SUMMARY, $OUT/gpu_check.tar.gz"
cat "$SUMMARY"
exit $STATUS
