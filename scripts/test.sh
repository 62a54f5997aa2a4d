#!/usr/bin/env bash
# The test command: set up (engine, venv), lint, then the unit, integration and container test suites.
# Usage: scripts/test.sh [PYTEST_ARGS...]
#   scripts/test.sh tests/unit           lint + the fast pure suite (in-process, no servers, no Docker; < 1 min)
#   scripts/test.sh tests/integration    real processes: train, serve (gunicorn + nginx), moto_server (minutes)
#   scripts/test.sh tests/container      builds and runs the real image (needs Docker)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup_dev.sh

echo "== lint" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
shellcheck build_and_push.sh scripts/*.sh local_test/*.sh .ci/run

echo "== tests" >&2
if [ $# -eq 0 ]; then
  set -- tests/unit tests/integration tests/container
fi
.venv/bin/python -m pytest "$@"
