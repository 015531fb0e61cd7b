#!/usr/bin/env bash
# GPU check on a lent CUDA machine (no internet there): install the two carried wheels the
# image lacks (simplejpeg, platformdirs), then run gpu_check.py. Needs .gpu/ (see
# benchmarks/README.md) and $OUT; writes gpu_results.json, gpu_profile.txt, gpu_log.txt there.
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
git log -1 --oneline 2>/dev/null; git branch --show-current 2>/dev/null
python3 benchmarks/gpu_check.py --data .gpu --out "${OUT:-/tmp}" "$@" 2>&1 | tee "${OUT:-/tmp}/gpu_log.txt"
