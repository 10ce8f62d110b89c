#!/usr/bin/env bash
# The main job: install what is missing, start the local stack, run the pipeline on sample
# data (load, DMS, consumer, activity), verify Gorse equals the database, reconcile dry run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/gorse-cdc stack up
exec .venv/bin/gorse-cdc demo "$@"
