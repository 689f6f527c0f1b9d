#!/usr/bin/env bash
# The main job: `blazefl run` (FedAvg on built-in data, per-round accuracy, a run
# folder under runs/). Sets up .venv with the cli extra on first use; extra
# arguments go to `blazefl run` (see scripts/run.sh --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh cli
exec .venv/bin/blazefl run "$@"
