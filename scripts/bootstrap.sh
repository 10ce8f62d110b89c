#!/usr/bin/env bash
# Create .venv and install gorse-cdc with its pinned dependencies (idempotent).
# System parts (PostgreSQL 15 + wal2json, the npm emulators, the Gorse build) are installed
# by `gorse-cdc stack up` itself.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" - <<'PYEOF'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"gorse-cdc needs Python >= 3.11, found {sys.version.split()[0]} (set PYTHON=...)")
PYEOF
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "installing Python dependencies into .venv (first run: a few minutes) ..."
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev,spark]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
for tool in go node npm java; do
  command -v "$tool" >/dev/null || echo "warning: $tool not found (needed by the local stack)" >&2
done
