#!/usr/bin/env bash
# Install Memstream and everything it runs on into ./.venv (idempotent).
# The broker (noida-db) and embedded ClickHouse (chDB) are pinned Python packages (the `dev`
# extra), so this is the whole install: no Docker, no system services.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev,test]"
