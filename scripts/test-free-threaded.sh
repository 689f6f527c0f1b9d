#!/usr/bin/env bash
# The core, coordinator, executor and determinism tests under a free-threaded
# CPython (GIL off), provisioned on first use by provision-free-threaded.sh
# (cached in ~/.cache/blazefl-ft between runs). tests/conftest.py fails the
# session if the GIL comes back on at any point. Arguments, if any, replace
# the default test list and go to pytest (give test paths with them).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/provision-free-threaded.sh
venv=${BLAZEFL_FT_VENV:-.venv-ft}
if [ "$#" -eq 0 ]; then
  set -- tests/core tests/reproducibility tests/sim tests/test_training.py \
    tests/test_free_threading.py tests/contrib tests/algorithms \
    tests/models/test_build_model.py tests/examples/test_dsfl.py
fi
exec env -u PYTHON_GIL "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
