#!/usr/bin/env bash
# Run the whole test suite: unit tests, then integration tests against a real local broker and
# embedded ClickHouse that the fixtures start and stop themselves; Memobase's Python SDK comes
# with the test extras, its JavaScript SDK from npm.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Memobase's JavaScript SDK, for tests/integration/test_sdk_js.py, and playwright-core, which drives
# the inspector's browser test (tests/integration/test_inspector.py); Node.js and npm come with the machine.
if command -v npm >/dev/null; then
    npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
fi
# The browser for that test: Debian's chromium (playwright-core downloads none), installed when it is
# missing and this runs as root with apt-get; otherwise the browser test skips and says why.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing Debian's chromium for the inspector's browser test" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 ||
        echo "test.sh: could not install chromium; the browser test will skip" >&2
fi
exec .venv/bin/python -m pytest -q "$@"
