"""Read commands start without torch: the import graph, not a timing (issue 17, item 1).

Each command runs in a fresh interpreter (so nothing another test imported leaks in), with
``--help`` so no server is needed; the e2e suite runs the same check on real queries.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "matplotlib", "scipy", "torchvision", "sklearn")

PROBE = f"""
import json, sys
from deepatlas.cli.app import app
try:
    app(sys.argv[1:], standalone_mode=False)
except BaseException:  # a usage error or exit: only the imports matter here
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))
"""


def heavy_modules(*args: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True)
    return sorted({m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])})


@pytest.mark.parametrize("args", [
    ["--help"],
    ["query", "--help"], ["query", "drivers", "--help"], ["query", "list"], ["query", "show", "class_drivers"],
    ["runs", "list", "--help"], ["db", "status", "--help"], ["audit", "confusion", "--help"],
    ["export", "gexf", "--help"], ["analyze", "--help"], ["experiment", "--help"], ["explain", "--help"],
    ["ingest", "--help"], ["train", "--help"],
])
def test_reading_and_help_do_not_import_torch(args: list[str]) -> None:
    assert heavy_modules(*args) == []


def test_the_probe_would_see_torch() -> None:
    # the same probe on a command that needs torch: proves the check above can fail
    assert "torch" in heavy_modules("train", "--data-dir", "/nonexistent", "--out", "/nonexistent/m.pt")
