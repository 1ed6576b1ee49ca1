#!/usr/bin/env bash
# The two commands of the README:
#   ./run_local.sh          set up .venv, then run the local demo (simulator -> Pub/Sub
#                           emulator -> streaming job), or a backtest where no emulator exists
#   ./run_local.sh test     set up .venv, start the Pub/Sub emulator(s), run the whole test
#                           suite on 2 pytest-xdist workers (tests/harness.py)
# Anything after `test` goes to pytest (e.g. ./run_local.sh test -k holds; serially: -n 0).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

setup_venv() {
  local stamp="$VENV/.safetynet-pins"
  local want
  want=$(cat requirements.lock setup.py | sha256sum | cut -d' ' -f1)
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV with $($PY --version 2>&1)"
    "$PY" -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[setup] installing pinned dependencies (requirements.lock); this takes a few minutes once"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -r requirements.lock
    "$VENV/bin/python" -m pip install -q --no-deps -e .
    echo "$want" > "$stamp"
  fi
}

setup_venv
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONHASHSEED=0

case "${1:-demo}" in
  test)
    shift || true
    exec "$VENV/bin/python" -m tests.harness "$@"
    ;;
  demo)
    shift || true
    exec "$VENV/bin/python" -m pipelines.demo "$@"
    ;;
  *)
    # Anything else is a safetynet sub-command: ./run_local.sh backtest --input ...
    exec "$VENV/bin/safetynet" "$@"
    ;;
esac
