#!/usr/bin/env bash
# ruff (lint + format check) and mypy --strict on src/, as CI runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
