"""Every ``>>>`` example in src/deepatlas runs, and none is skipped."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
MODULES = sorted(
    ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
    for p in (SRC / "deepatlas").rglob("*.py") if ">>>" in p.read_text()
)


def test_examples_exist_and_none_is_skipped() -> None:
    assert len(MODULES) >= 8
    for name in MODULES:
        path = SRC / (name.replace(".", "/") + ".py")
        text = path.read_text() if path.exists() else (SRC / name.replace(".", "/") / "__init__.py").read_text()
        assert "+SKIP" not in text, name


@pytest.mark.parametrize("name", MODULES)
def test_doctests_run(name: str) -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, name


@pytest.mark.parametrize("package", ["deepatlas", "deepatlas.data", "deepatlas.models", "deepatlas.ingest",
                                     "deepatlas.explain", "deepatlas.graphops"])
def test_every_exported_name_imports(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__, package
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
