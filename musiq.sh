#!/usr/bin/env bash
# Set up on first use, then run the musiq command, e.g.:
#   bash musiq.sh score photos/ --model koniq
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
bash "$root/scripts/setup.sh"
exec "$root/.venv/bin/musiq" "$@"
