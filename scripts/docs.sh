#!/usr/bin/env bash
# Build the docs site (MkDocs Material + mkdocstrings) into site/, offline,
# with every warning an error (broken links, anchors, API references).
#   scripts/docs.sh            # build site/
#   scripts/docs.sh serve      # preview at http://127.0.0.1:8000/
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
export NO_MKDOCS_2_WARNING=1
if [ "${1:-}" = "serve" ]; then
  exec .venv/bin/mkdocs serve -a 127.0.0.1:8000
fi
exec .venv/bin/mkdocs build --strict --quiet
