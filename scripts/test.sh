#!/usr/bin/env bash
# The test command: installs and starts everything the tests need, runs unit then
# integration tests against the real local stack, and stops the stack it started.
# GORSE_CDC_KEEP_STACK=1 keeps the stack running afterwards (faster reruns).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# the layers (import-linter, contracts in pyproject.toml): seconds, and CI runs them too
.venv/bin/lint-imports --no-cache
started=0
if ! .venv/bin/gorse-cdc stack status >/dev/null 2>&1; then started=1; fi
.venv/bin/gorse-cdc stack up
cleanup() {
  if [ "$started" = 1 ] && [ "${GORSE_CDC_KEEP_STACK:-0}" != 1 ]; then .venv/bin/gorse-cdc stack down || true; fi
}
trap cleanup EXIT
.venv/bin/python -m pytest tests -q -p no:cacheprovider "$@"
