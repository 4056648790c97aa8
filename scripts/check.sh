#!/usr/bin/env bash
# Lint, format and type checks (the tools come with the test extras; scripts/setup.sh installs them).
# Runs every check and fails if any of them failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PATHS=(memstream streams projections api scripts tests examples)
failed=0
.venv/bin/ruff format --check "${PATHS[@]}" || failed=1
.venv/bin/ruff check "${PATHS[@]}" || failed=1
.venv/bin/mypy || failed=1  # the files and settings: [tool.mypy] in pyproject.toml
if [ "$failed" -ne 0 ]; then
    echo "check: FAILED" >&2
fi
exit "$failed"
