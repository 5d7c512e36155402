"""CLI error paths: one clear line, non-zero exit, no traceback. No server needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepatlas import __version__
from deepatlas.cli.app import app
from deepatlas.db.settings import Settings

runner = CliRunner()


def _one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "Traceback" not in result.output
    assert lines and lines[0].startswith("error:"), result.output
    return lines[0]


def test_version_and_help() -> None:
    assert runner.invoke(app, ["--version"]).output.strip() == f"deepatlas {__version__}"
    out = runner.invoke(app, ["--help"]).output
    for cmd in ("db", "train", "ingest", "query", "runs", "demo"):
        assert cmd in out


def test_ingest_missing_checkpoint(tmp_path: Path) -> None:
    r = runner.invoke(app, ["ingest", "--model", str(tmp_path / "none.pt")])
    assert r.exit_code == 1
    assert "does not exist" in _one_error_line(r)


def test_ingest_corrupt_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "bad.pt").write_bytes(b"\x00" * 100)
    r = runner.invoke(app, ["ingest", "--model", str(tmp_path / "bad.pt")])
    assert r.exit_code == 1 and "corrupt or truncated" in _one_error_line(r)


def test_train_with_missing_data_dir(tmp_path: Path) -> None:
    r = runner.invoke(app, ["train", "--data-dir", str(tmp_path), "--out", str(tmp_path / "m.pt")])
    assert r.exit_code == 1 and "not found" in _one_error_line(r)
    assert not (tmp_path / "m.pt").exists()


def test_bad_ranges_are_usage_errors() -> None:
    r = runner.invoke(app, ["train", "--epochs", "0"])
    assert r.exit_code == 2


def test_query_run_malformed_param_and_unknown_template() -> None:
    r = runner.invoke(app, ["query", "run", "class_list", "-p", "oops"])
    assert r.exit_code == 1 and "malformed parameter" in _one_error_line(r)
    r = runner.invoke(app, ["query", "run", "no_such_template"])
    assert r.exit_code == 1 and "class_drivers, class_list" in _one_error_line(r)


def test_db_commands_refuse_with_external_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEO4J_URI", "bolt://example.invalid:7687")
    r = runner.invoke(app, ["db", "start"])
    assert r.exit_code == 1 and "NEO4J_URI is set" in _one_error_line(r)


def test_unreachable_external_server_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEO4J_URI", "bolt://127.0.0.1:1")
    monkeypatch.setenv("NEO4J_PASSWORD", "s3cret-pw")
    r = runner.invoke(app, ["runs", "list"])
    assert r.exit_code == 1
    line = _one_error_line(r)
    assert "cannot reach Neo4j at bolt://127.0.0.1:1" in line and "s3cret-pw" not in r.output


def test_settings_never_show_the_password() -> None:
    s = Settings("bolt://x", "neo4j", "hunter2")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s)


def test_query_show_prints_a_template_byte_for_byte_at_any_width() -> None:
    """Cut at the terminal's width, a pasted template was still valid Cypher returning something else."""
    from importlib import resources

    want = resources.files("deepatlas.cypher").joinpath("confused_pairs_shared.cypher").read_text()
    r = CliRunner().invoke(app, ["query", "show", "confused_pairs_shared"], env={"COLUMNS": "40"})
    assert r.exit_code == 0 and r.stdout == want
