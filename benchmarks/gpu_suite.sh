#!/usr/bin/env bash
# One command for a lent GPU (under 8 minutes): embedding tiles/s, training step img/s, MFU and
# peak memory for ViT-S/14 and ViT-B/14 at batch 64/GPU, and a 300-step loss curve, in one table.
#   bash benchmarks/gpu_suite.sh            (from the repository root; PYTHON=... to choose)
# Without a CUDA device it says so and exits with status 2.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_suite: no CUDA device (torch.cuda.is_available() is False); nothing measured" >&2
    exit 2
fi
exec timeout 480 "$PYTHON" benchmarks/gpu_suite.py "$@"
