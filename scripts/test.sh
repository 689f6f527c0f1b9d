#!/usr/bin/env bash
# The test suite. Sets up .venv (with the dev and ray extras) on first use; extra
# arguments go to pytest (e.g. scripts/test.sh -k determinism).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev,ray
exec .venv/bin/python -m pytest "$@"
