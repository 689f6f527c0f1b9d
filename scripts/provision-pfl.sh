#!/usr/bin/env bash
# Provision .venv-pfl: a Python 3.11 virtual environment with pfl-research
# (pfl[pytorch]==0.6.0), torch 2.13.0 and blazefl (editable, runtime
# dependencies only), for the pfl-research column of benchmarks/cohort.py and
# the peer rows of benchmarks/peers.py. Idempotent: when the stamp matches,
# only the final import check runs.
#
#   scripts/provision-pfl.sh
#   .venv/bin/python benchmarks/peers.py
#
# pfl 0.6.0 requires Python >= 3.10, < 3.13 and torch >= 2.0.1, < 3; under
# 3.11 the torch 2.13.0 pin resolves to the CPU build on this project's
# machines (no download of CUDA wheels), exactly as scripts/bootstrap.sh does.
# blazefl is installed so that the pfl workloads use the *same* data sets,
# models and initial parameters as the other columns (benchmarks/pfl_app.py).
# pfl's multi-process mode is `torchrun` (gloo, on loopback).
#
# Environment (all optional):
#   PYTHON              interpreter for the venv (default python3.11).
#   BLAZEFL_PFL_VENV    the venv (default .venv-pfl in the repo).
#   BLAZEFL_PFL_SPEC    pip spec for pfl (default pfl[pytorch]==0.6.0, the
#                       version benchmarks/pfl_app.py was written for).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

python=${PYTHON:-python3.11}
venv=${BLAZEFL_PFL_VENV:-$repo/.venv-pfl}
pfl_spec=${BLAZEFL_PFL_SPEC:-pfl[pytorch]==0.6.0}
torch_spec=torch==2.13.0

say() { echo "provision-pfl: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

command -v "$python" >/dev/null || die "$python not found (set PYTHON to a Python 3.11)"
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
  say "warning: $python is not 3.11; torch $torch_spec may download a CUDA build (GBs)"

pip_cmd=("$venv/bin/python" -m pip --disable-pip-version-check -q)
pip() {
  # This machine's pip config lists file:// indexes that lack most projects;
  # pip warns once per project about each. Drop only those lines.
  "${pip_cmd[@]}" "$@" 2>&1 | { grep -v "^WARNING: Location 'file://.*' is ignored" || true; } >&2
}

stamp=$venv/.blazefl-pfl-installed
want=$(
  {
    "$python" -VV
    echo "$python $pfl_spec $torch_spec $repo"
    cat pyproject.toml "$repo/scripts/provision-pfl.sh"
  } | sha256sum | cut -d' ' -f1
)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  say "$venv is up to date"
else
  if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv with $("$python" --version)"
    "$python" -m venv "$venv"
  fi
  rm -f "$stamp"
  # torch first, so that pfl's "torch>=2.0.1,<3" is already satisfied.
  if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    say "installing $torch_spec"
    pip install "$torch_spec" || die "could not install $torch_spec"
  fi
  constraints=$venv/pfl-constraints.txt
  echo "$torch_spec" >"$constraints"
  say "installing $pfl_spec"
  pip install -c "$constraints" "$pfl_spec" || die "could not install $pfl_spec"
  say "installing blazefl (editable, runtime dependencies)"
  pip install -c "$constraints" -e . || die "could not install blazefl into $venv"
  echo "$want" >"$stamp"
fi

"$venv/bin/python" -c '
import importlib.metadata as m, torch, blazefl
import pfl.model.pytorch, pfl.algorithm, pfl.aggregate.simulate
print("provision-pfl: pfl", m.version("pfl"), "torch", torch.__version__,
      "blazefl", blazefl.__version__)
' || die "$venv does not import pfl (PyTorch backend), torch and blazefl; delete it and rerun"
[ -x "$venv/bin/torchrun" ] || die "$venv has no torchrun (pfl's multi-process mode)"
say "ready: .venv/bin/python benchmarks/peers.py"
