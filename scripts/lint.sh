#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy gorse_cdc consumers producers glue entrypoints
.venv/bin/lint-imports
if [ -x scripts/lint-infra.sh ]; then scripts/lint-infra.sh; fi
