#!/usr/bin/env bash
# Build the one-line GPU check that was run on the lent H200 (results:
# benchmarks/results/gpu_h200_2026-11-26.txt), or run it directly on a CUDA machine.
#
#   bash benchmarks/gpu_check.sh print 1|2   # the command for the device tool (<= 2000 chars)
#   bash benchmarks/gpu_check.sh run 1|2     # run part 1 or 2 here (needs CUDA)
#
# Why compressed: the device tool accepts a command of at most 2000 characters and sends
# the session's main checkout, not this branch; so each part is gpu/common.py (it rebuilds the
# golden weights of ../shared/tools/make_checkpoint.py in memory and stubs simplejpeg and
# platformdirs, which that machine lacks) + gpu/partN.py, zlib+base64-encoded, using only the
# core (model, preprocess) that main already has. Part 1: exactness vs the CPU path, speed
# per precision, preprocessing throughput, a CUDA profile; part 2: TF32 off, torch.compile.
set -euo pipefail
cd "$(dirname "$0")/gpu"
part=${2:-1}
src=$(cat common.py "part$part.py")
if [ "${1:-print}" = run ]; then
  cd ../.. && exec python3 -c "$src"
fi
python3 - "$src" <<'PY'
import base64, sys, zlib
b = base64.b64encode(zlib.compress(sys.argv[1].encode(), 9)).decode()
print(f'python3 -c "import zlib,base64;exec(zlib.decompress(base64.b64decode(\'{b}\')))"')
PY
