"""Issue 18 defects that need no server: each one line and a non-zero exit, nothing done."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepatlas.cli._common import setup_logging
from deepatlas.cli.app import app
from deepatlas.db.templates import parse_param_value
from deepatlas.errors import UsageError

runner = CliRunner()


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output and lines and lines[0].startswith("error:"), output
    return lines[0]


def test_a_huge_integer_parameter_is_one_usage_error() -> None:
    with pytest.raises(UsageError, match="64-bit integer"):
        parse_param_value("k", "9" * 40, "int")
    assert parse_param_value("k", str(2**63 - 1), "int") == 2**63 - 1


def test_a_port_that_is_not_a_number(tmp_path: Path) -> None:
    env = {"DEEPATLAS_HOME": str(tmp_path), "DEEPATLAS_BOLT_PORT": "abc", "NEO4J_URI": ""}
    r = runner.invoke(app, ["db", "status"], env=env)
    assert r.exit_code == 1
    assert "DEEPATLAS_BOLT_PORT must be a port number from 1 to 65535, got 'abc'" in _one_error_line(r.output)
    r = runner.invoke(app, ["db", "status"], env={**env, "DEEPATLAS_BOLT_PORT": "70000"})
    assert r.exit_code == 1 and "got '70000'" in r.output


def test_an_empty_run_name_is_refused_before_any_work(tiny_checkpoint: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["ingest", "--model", str(tiny_checkpoint), "--run", "", "--limit", "20"],
                      env={"DEEPATLAS_HOME": str(tmp_path), "NEO4J_URI": "bolt://127.0.0.1:1"})
    assert r.exit_code == 1 and "run name '' must be 1-100 characters" in _one_error_line(r.output)


def test_driver_log_lines_go_to_a_file_not_the_terminal(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    driver = logging.getLogger("neo4j")
    saved = driver.handlers[:]
    driver.handlers.clear()
    try:
        setup_logging(tmp_path / "logs" / "driver.log")
        logging.getLogger("neo4j.pool").warning("Transaction failed and will be retried in 0.82 s (simulated)")
        for h in driver.handlers:
            h.flush()
        out, err = capfd.readouterr()
        assert "retried" not in out + err
        log = tmp_path / "logs" / "driver.log"
        assert "retried in 0.82 s" in log.read_text() and (log.stat().st_mode & 0o777) == 0o600
    finally:
        for h in driver.handlers:
            h.close()
        driver.handlers[:] = saved
