#!/usr/bin/env bash
# Collect the wheels blazefl needs beside torch into .gpu-wheels/ (git-ignored),
# for a GPU machine that has torch and CUDA but no package registry.
#
#   bash scripts/gpu-bundle.sh            # here, where pip reaches the registry
#   # then, on the GPU machine, with .gpu-wheels carried along:
#   bash benchmarks/gpu_run.sh --out "$OUT"
#
# blazefl's own code travels as the source tree (benchmarks/gpu_run.sh puts
# src/ on PYTHONPATH); torch and numpy are the machine's. structlog is missing
# there; anyio is bundled too so that its version is one blazefl supports
# (anyio>=4.6), with the typing_extensions it asks for (>=4.16; newer ones
# stay compatible with what the image's packages expect). All are pure-Python
# wheels: one set serves every CPython 3. Versions: those of this project's
# environment, overridable.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=${BLAZEFL_WHEELS:-.gpu-wheels}
STRUCTLOG=${STRUCTLOG_VERSION:-26.1.0}
ANYIO=${ANYIO_VERSION:-4.16.0}
TYPING=${TYPING_EXTENSIONS_VERSION:-4.16.0}
# For `gpu_run.sh --with-tests`: the suite's config needs pytest-asyncio.
PYTEST_ASYNCIO=${PYTEST_ASYNCIO_VERSION:-1.5.0}
mkdir -p "$DEST"
rm -f "$DEST"/*.whl
"$PY" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi none --platform any \
    -d "$DEST" "structlog==$STRUCTLOG" "anyio==$ANYIO" \
    "typing_extensions==$TYPING" "pytest-asyncio==$PYTEST_ASYNCIO"
ls -l "$DEST"
# What else they need (idna, pytest) is on the GPU machine's image.
for wheel in "$DEST"/*.whl; do
    echo "$(basename "$wheel") requires:"
    unzip -p "$wheel" '*.dist-info/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' || true
done
