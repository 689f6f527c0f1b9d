#!/usr/bin/env bash
# The main job: FedAvg on the built-in data set, printing per-round accuracy.
# Sets up .venv on first use. Extra arguments go to the example (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh contrib
exec .venv/bin/python examples/quickstart-fedavg/main.py "$@"
