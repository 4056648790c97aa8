#!/usr/bin/env bash
# Run the whole test suite: unit tests, then integration tests against a real local broker and
# embedded ClickHouse that the fixtures start and stop themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
