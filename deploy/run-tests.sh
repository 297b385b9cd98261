#!/usr/bin/env bash
# Sets up what is missing (see setup.sh), then runs the linters and the whole test suite.
# Extra arguments go to pytest, e.g. ./deploy/run-tests.sh -k spool
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/deploy/setup.sh"
cd "$ROOT"
echo "==> ruff" >&2
.venv/bin/ruff check .
echo "==> mypy" >&2
.venv/bin/mypy
echo "==> pytest" >&2
exec .venv/bin/python -m pytest "$@"
