#!/usr/bin/env bash
# Run the whole test suite: unit tests, then integration tests against a real local broker and
# embedded ClickHouse that the fixtures start and stop themselves; Memobase's Python SDK comes
# with the test extras, its JavaScript SDK from npm.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Memobase's JavaScript SDK, for tests/integration/test_sdk_js.py (Node.js and npm come with the machine).
if command -v npm >/dev/null; then
    npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
fi
exec .venv/bin/python -m pytest -q "$@"
