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
name=provision-pfl

peer_spec=$pfl_spec
# shellcheck source=scripts/provision-peer-lib.sh
source "$repo/scripts/provision-peer-lib.sh"
provision_peer pfl

"$venv/bin/python" -c '
import importlib.metadata as m, torch, blazefl
import pfl.model.pytorch, pfl.algorithm, pfl.aggregate.simulate
print("provision-pfl: pfl", m.version("pfl"), "torch", torch.__version__,
      "blazefl", blazefl.__version__)
' || die "$venv does not import pfl (PyTorch backend), torch and blazefl; delete it and rerun"
[ -x "$venv/bin/torchrun" ] || die "$venv has no torchrun (pfl's multi-process mode)"
say "ready: .venv/bin/python benchmarks/peers.py"
