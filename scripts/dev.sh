#!/usr/bin/env bash
# Set up, then run the whole service locally: broker, ClickHouse, worker, API, offline extractor.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/memstream dev "$@"
