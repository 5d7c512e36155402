from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from deepatlas.db.templates import list_templates, load_template, parse_param_value
from deepatlas.errors import NotFoundError, UsageError

SRC = Path(__file__).resolve().parents[3] / "src" / "deepatlas"


def test_every_template_declares_exactly_the_parameters_it_uses() -> None:
    templates = list_templates()
    assert len(templates) >= 6
    for t in templates:
        assert t.description, t.name
        assert set(t.params) == t.used_params, t.name
        assert "run" in t.params or t.name.startswith("runs")


def test_callers_pass_the_parameters_the_template_uses() -> None:
    """Every run_template(graph, "NAME", {...}) call site passes exactly NAME's parameters."""
    calls = 0
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "run_template"
                    and len(node.args) == 3 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[2], ast.Dict)):
                keys = {k.value for k in node.args[2].keys if isinstance(k, ast.Constant)}
                assert keys == load_template(node.args[1].value).used_params, f"{path}:{node.lineno}"
                calls += 1
    assert calls >= 1


def test_templates_only_use_parameters_never_spliced_values() -> None:
    for t in list_templates():
        body = "\n".join(line for line in t.text.splitlines() if not line.startswith("//"))
        assert not re.search(r"\b(CREATE|MERGE|DELETE|SET|REMOVE)\b", body), t.name  # read-only library


def test_unknown_template_lists_the_valid_ones() -> None:
    with pytest.raises(NotFoundError, match="class_drivers"):
        load_template("drop_everything")


def test_bind_types_and_errors() -> None:
    t = load_template("class_drivers")
    assert t.bind({"run": "r", "class": "Sandal", "k": "5"}) == {"run": "r", "class": "Sandal", "k": 5}
    with pytest.raises(UsageError, match="k must be int"):
        t.bind({"run": "r", "class": "Sandal", "k": "five"})
    with pytest.raises(UsageError, match="no parameter evil"):
        t.bind({"run": "r", "class": "x", "k": "1", "evil": "1"})
    with pytest.raises(UsageError, match="needs -p k"):
        t.bind({"run": "r", "class": "x"})
    assert parse_param_value("b", "TRUE", "bool") is True
