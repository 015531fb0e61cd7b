#!/usr/bin/env bash
# Create .venv and install musiq with pinned versions (requirements/constraints.txt).
# Usage: scripts/setup.sh [dev]   -- every command in README.md works after it (every extra:
#                                   serve, eval, train, onnx, parquet, ray, video); "dev" adds the
#                                   test tools.
# torch: the CPU build where there is no NVIDIA GPU, the CUDA build where there is one
# (scripts/torch_build.py decides and says which; MUSIQ_TORCH=cpu|cuda overrides).
# $PYTHON: the interpreter for the venv (default python3; 3.11 or newer).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
extras="serve,eval,train,onnx,parquet,ray,serve-ray,video"
[ "${1:-}" = "dev" ] && extras="$extras,dev"
stamp=".venv/.musiq-installed-$(echo "$extras" | tr -cd 'a-z')"
# A venv cut short (Ctrl-C during the first setup) has a python but no pip: made again.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  python=${PYTHON:-python3}
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "musiq setup: needs Python 3.11 or newer; $python is $("$python" -V 2>&1 || echo missing)." \
         "Set PYTHON=/path/to/python3.11 (or newer) and run again." >&2
    exit 1
  fi
  "$python" -m venv --clear .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements/constraints.txt -nt "$stamp" ]; then
  echo "musiq setup: installing into $root/.venv (first run: a few minutes)" >&2
  .venv/bin/python -m pip install --quiet --upgrade "pip>=23" >/dev/null
  .venv/bin/python scripts/torch_build.py
  .venv/bin/python -m pip install --quiet -c requirements/constraints.txt -e ".[${extras}]"
  touch "$stamp"
  echo "musiq setup: done; the command is $root/.venv/bin/musiq" \
       "(or: source $root/.venv/bin/activate)" >&2
fi
