#!/usr/bin/env bash
# One command for lent GPUs (about 8 minutes): our training step with DDP and FSDP over every
# visible GPU at the recipes' batch sizes with torch.compile, the official DINOv2 trainer's step
# beside it (DINOV2_SRC=/path/to/a/facebookresearch/dinov2 checkout), the plugin's embedding
# rate and a loss curve. Rows appear as they finish, so a timeout loses only the unfinished ones.
#   bash benchmarks/gpu_suite.sh            (from anywhere; PYTHON=... to choose the interpreter)
#   bash benchmarks/gpu_suite.sh --smoke    (the same code on the CPU, 2 Gloo processes, tiny)
# Without a CUDA device (and without --smoke) it says so and exits with status 2.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
SMOKE=()
if [ "${1:-}" = "--smoke" ]; then
    SMOKE=(--smoke)
    NPROC=2
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    LIMIT=(timeout 150)
else
    if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_suite: no CUDA device (torch.cuda.is_available() is False); nothing measured" >&2
        exit 2
    fi
    NPROC="$(nvidia-smi -L | wc -l)"
    LIMIT=(timeout 330)
fi
# every visible GPU (or 2 CPU processes) on this node; --standalone: a free port each time
TORCHRUN=("$PYTHON" -m torch.distributed.run --standalone --nproc-per-node="$NPROC")
status=0
"${LIMIT[@]}" "${TORCHRUN[@]}" benchmarks/gpu_suite.py --part ours --header "${SMOKE[@]}" || status=$?
if [ -n "${DINOV2_SRC:-}" ] && [ ${#SMOKE[@]} -eq 0 ]; then
    timeout 180 "${TORCHRUN[@]}" benchmarks/gpu_suite.py --part official || status=$?
else  # a row saying why there is no official row
    "$PYTHON" benchmarks/gpu_suite.py --part official "${SMOKE[@]}" || status=$?
fi
"${LIMIT[@]}" "${TORCHRUN[@]}" benchmarks/gpu_suite.py --part curve "${SMOKE[@]}" || status=$?
exit "$status"
