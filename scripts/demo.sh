#!/usr/bin/env bash
# The main job on a fresh machine: install, start Neo4j, train (or reuse) the reference CNN,
# ingest the Fashion-MNIST test split, print the drivers of Sandal and how to see them in Browser.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec .venv/bin/deepatlas demo "$@"
