#!/usr/bin/env bash
# Create .venv and install musiq with pinned versions (requirements/constraints.txt).
# Usage: scripts/setup.sh [dev]   -- every subcommand (serve, evaluate, train, video) works after it;
#                                   "dev" adds the test tools.
# The constraints pin torch to the CPU build; an unpinned torch would pull CUDA packages.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
extra="[serve,eval,video]"
[ "${1:-}" = "dev" ] && extra="[serve,eval,video,dev]"
stamp=".venv/.musiq-installed-$(echo "$extra" | tr -cd 'a-z')"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements/constraints.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade "pip>=23" >/dev/null
  .venv/bin/python -m pip install --quiet -c requirements/constraints.txt -e ".${extra}"
  touch "$stamp"
fi
