#!/usr/bin/env bash
# Installs everything deepatlas needs, idempotently, and is quick when nothing changed:
#   Debian packages  dataset-fashion-mnist (the real Fashion-MNIST), Java 17, Maven, Chromium
#   Python           .venv with deepatlas and its dev dependencies (editable)
#   Neo4j            the 5.26 Community jars from Maven Central, cached in ~/.cache/deepatlas
# Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need=()
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v chromium >/dev/null 2>&1 || need+=(chromium)  # the e2e test of Neo4j Browser
if [ "${#need[@]}" -gt 0 ]; then
  echo "bootstrap: apt-get install ${need[*]}" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.deepatlas-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: pip install -e .[dev] (the first time downloads torch: a few minutes)" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi

.venv/bin/deepatlas db install >/dev/null
