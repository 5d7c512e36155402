from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import pytest

from deepatlas.db.templates import (
    cypher,
    internal_statements,
    list_templates,
    load_template,
    parse_param_value,
)
from deepatlas.errors import NotFoundError, UsageError

SRC = Path(__file__).resolve().parents[3] / "src" / "deepatlas"


def test_every_template_declares_exactly_the_parameters_it_uses() -> None:
    templates = list_templates()
    assert len(templates) >= 6
    for t in templates:
        assert t.description, t.name
        assert set(t.params) == t.used_params, t.name
        assert "run" in t.params or t.name.startswith("runs") or {"base", "head"} <= set(t.params)  # a comparison's two runs


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


def _cypher_calls() -> list[tuple[Path, ast.Call, ast.AST | None]]:
    """Every cypher("NAME", ...) call under src/deepatlas, with the parameter dict passed beside it
    (the next argument of graph.read/write/..., or the second element of a (query, params) tuple)."""
    out: list[tuple[Path, ast.Call, ast.AST | None]] = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        beside: dict[int, ast.AST] = {}
        for node in ast.walk(tree):
            seq = node.args if isinstance(node, ast.Call) else node.elts if isinstance(node, ast.Tuple) else []
            for a, b in itertools.pairwise(seq):
                beside[id(a)] = b
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "cypher" and node.args:
                out.append((path, node, beside.get(id(node))))
    return out


def test_internal_statements_declare_and_receive_exactly_their_parameters() -> None:
    statements = {t.name: t for t in internal_statements()}
    assert len(statements) >= 50
    for t in statements.values():
        assert t.description and not t.description.startswith("Used by"), t.name
        assert set(t.params) == t.used_params, t.name
    used = set()
    checked = 0
    for path, call, params in _cypher_calls():
        name = call.args[0].value  # type: ignore[attr-defined]
        assert name in statements, f"{path}:{call.lineno}: no cypher/internal/{name}.cypher"
        used.add(name)
        if isinstance(params, ast.Dict):
            keys = {k.value for k in params.keys if isinstance(k, ast.Constant)}
            # Graph.write_until_done adds $limit, Graph.write_batches adds $rows
            implicit = {"limit"} if "LIMIT $limit" in statements[name].text else set()
            assert keys | implicit == statements[name].used_params, f"{path}:{call.lineno} {name}"
            checked += 1
    assert checked >= 30
    assert used == set(statements), f"unused statements: {sorted(set(statements) - used)}"


def test_no_cypher_is_left_in_python_strings() -> None:
    keyword = re.compile(r"\s*(MATCH|UNWIND|MERGE|CREATE|CALL|SHOW|RETURN|OPTIONAL MATCH|DETACH)\s")
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef) and n.body
                      and isinstance(n.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert not keyword.match(node.value), f"{path}:{node.lineno}: {node.value[:60]!r}"


def test_placeholders_take_only_identifiers() -> None:
    assert cypher("count_nodes", label="Neuron").startswith("MATCH (n:Neuron {run: $key})")
    with pytest.raises(ValueError, match="identifiers"):
        cypher("count_nodes", label="Neuron) DETACH DELETE (m")
    with pytest.raises(ValueError, match="placeholders"):
        cypher("count_nodes")


def test_write_batches_shrink_for_rows_with_long_lists() -> None:
    from deepatlas.db.runs import BATCH_PAYLOAD_BYTES, rows_per_batch

    assert rows_per_batch([{"key": "a", "index": 1}], 5000) == 5000
    wide = [{"key": "a", "pixel_r": [0.0] * 12_288}]
    n = rows_per_batch(wide, 5000)
    assert 1 <= n < 5000 and n * 8 * 12_288 <= BATCH_PAYLOAD_BYTES
    assert rows_per_batch([{"pixel_r": [0.0] * 10**8}], 5000) == 1 and rows_per_batch([], 7) == 7
