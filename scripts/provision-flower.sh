#!/usr/bin/env bash
# Provision .venv-flower: a Python 3.11 virtual environment with Flower's
# simulation engine (flwr[simulation], which brings Ray), torch 2.13.0 and
# blazefl (editable, runtime dependencies only), for the optional Flower
# column of benchmarks/matrix.py. Idempotent: when the stamp matches, only the
# final import check runs.
#
#   scripts/provision-flower.sh
#   .venv/bin/python benchmarks/matrix.py --flower
#
# blazefl is installed so that the Flower client runs the *same* arithmetic as
# the other columns: the same model zoo, synthetic data, blazefl.training.train
# and data-size-weighted average (benchmarks/flower_app.py).
#
# Environment (all optional):
#   PYTHON                 interpreter for the venv (default python3.11).
#   BLAZEFL_FLOWER_VENV    the venv (default .venv-flower in the repo).
#   BLAZEFL_FLOWER_SPEC    pip spec for Flower (default flwr[simulation]==1.42.0,
#                          the version benchmarks/flower_app.py was written for).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

python=${PYTHON:-python3.11}
venv=${BLAZEFL_FLOWER_VENV:-$repo/.venv-flower}
flwr_spec=${BLAZEFL_FLOWER_SPEC:-flwr[simulation]==1.42.0}
torch_spec=torch==2.13.0

say() { echo "provision-flower: $*" >&2; }
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
  # With pipefail the pipeline's status is pip's.
  "${pip_cmd[@]}" "$@" 2>&1 | { grep -v "^WARNING: Location 'file://.*' is ignored" || true; } >&2
}

stamp=$venv/.blazefl-flower-installed
want=$(
  {
    "$python" -VV
    echo "$python $flwr_spec $torch_spec $repo"
    cat pyproject.toml "$repo/scripts/provision-flower.sh"
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
  # torch first, exactly as scripts/bootstrap.sh does: under 3.11 this pin
  # resolves to the CPU build on this project's machines, and installing it
  # before Flower keeps pip from picking another torch.
  if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    say "installing $torch_spec"
    pip install "$torch_spec" || die "could not install $torch_spec"
  fi
  constraints=$venv/flower-constraints.txt
  echo "$torch_spec" >"$constraints"
  say "installing $flwr_spec"
  pip install -c "$constraints" "$flwr_spec" || die "could not install $flwr_spec"
  say "installing blazefl (editable, runtime dependencies)"
  pip install -c "$constraints" -e . || die "could not install blazefl into $venv"
  echo "$want" >"$stamp"
fi

"$venv/bin/python" -c '
import flwr, ray, torch, blazefl
print(f"provision-flower: flwr {flwr.__version__}, ray {ray.__version__}, "
      f"torch {torch.__version__}, blazefl {blazefl.__version__}")
' || die "$venv does not import flwr, ray, torch and blazefl; delete it and rerun"
say "ready: .venv/bin/python benchmarks/matrix.py --flower"
