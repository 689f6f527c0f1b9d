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
name=provision-flower

peer_spec=$flwr_spec
# shellcheck source=scripts/provision-peer-lib.sh
source "$repo/scripts/provision-peer-lib.sh"
provision_peer flower

"$venv/bin/python" -c '
import flwr, ray, torch, blazefl
print(f"provision-flower: flwr {flwr.__version__}, ray {ray.__version__}, "
      f"torch {torch.__version__}, blazefl {blazefl.__version__}")
' || die "$venv does not import flwr, ray, torch and blazefl; delete it and rerun"
say "ready: .venv/bin/python benchmarks/matrix.py --flower"
