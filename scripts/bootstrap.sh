#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv and install
# blazefl into it with the given extras. Idempotent: does nothing when the
# environment already matches pyproject.toml.
#
#   scripts/bootstrap.sh            # runtime + contrib extra
#   scripts/bootstrap.sh dev        # + test and lint tools
#
# Python: $PYTHON if set, else python3 (3.11+). On Python 3.11, torch 2.13.0 is
# installed first: on this project's machines it is a CPU build that lies on
# disk, where a plain "torch" would download a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-contrib}"
venv="${VENV:-.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "bootstrap: creating $venv with $($python --version)" >&2
  "$python" -m venv "$venv"
fi

stamp="$venv/.blazefl-installed-$extras"
want="$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  if "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "bootstrap: installing torch 2.13.0 (CPU)" >&2
    "${pip[@]}" install "torch==2.13.0"
  fi
fi
echo "bootstrap: installing blazefl[$extras] (editable)" >&2
"${pip[@]}" install -e ".[$extras]"
echo "$want" > "$stamp"
