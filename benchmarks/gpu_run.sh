#!/usr/bin/env bash
# benchmarks/gpu.py as one command on a bare GPU machine: torch and CUDA are
# there, structlog (and a recent anyio) may not be, and no registry is
# reachable. scripts/gpu-bundle.sh collects the wheels into .gpu-wheels/
# beforehand; carry that folder along. They are installed offline into a
# private folder (never into the machine's own environment), src/ goes on
# PYTHONPATH (spawned worker processes inherit both), and the benchmark runs.
#
#   bash benchmarks/gpu_run.sh --out "$OUT"       # arguments go to gpu.py
#   bash benchmarks/gpu_run.sh --with-tests --out "$OUT"   # then tests/gpu too
#
# Then copy gpu.json and gpu.md from the --out folder into benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
TESTS=0
ARGS=()
for arg in "$@"; do
    if [ "$arg" = "--with-tests" ]; then TESTS=1; else ARGS+=("$arg"); fi
done
PY=${PYTHON:-python3}
WHEELS=${BLAZEFL_WHEELS:-.gpu-wheels}
SITE=${BLAZEFL_SITE:-/tmp/blazefl-site}
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target "$SITE" "$WHEELS"/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
elif ! "$PY" -c "import structlog, anyio" 2>/dev/null; then
    echo "structlog or anyio is missing and $WHEELS/ holds no wheels:" \
        "run scripts/gpu-bundle.sh where pip reaches the registry, and carry" \
        "$WHEELS along" >&2
    exit 2
fi
export PYTHONPATH="$PWD/src:$PYTHONPATH"
# Before any process starts CUDA (cuBLAS reads it once per process).
export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}
export PYTHONUNBUFFERED=1
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'gpus', torch.cuda.device_count())"
rc=0
"$PY" benchmarks/gpu.py "${ARGS[@]}" || rc=$?
if [ "$TESTS" = 1 ]; then
    # The CUDA-only tests (skipped on machines without a GPU).
    "$PY" -m pytest tests/gpu -q -p no:cacheprovider || rc=$((rc ? rc : $?))
fi
exit "$rc"
