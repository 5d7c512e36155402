#!/usr/bin/env bash
# The test suite on a fresh machine: install, lint, then unit and e2e tests (the e2e tests
# start a real Neo4j in a temporary home on free ports, once per session, and stop it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
.venv/bin/ruff check src tests bench
.venv/bin/python -m pytest -q "$@"
