"""--help reads as prose at 80 columns: a docstring's line breaks do not end lines mid-sentence."""

from __future__ import annotations

from typer.testing import CliRunner

from deepatlas.cli._common import _reflow
from deepatlas.cli.app import app


def _help(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    return result.output


def test_a_paragraph_wraps_to_the_terminal_not_to_the_docstring() -> None:
    text = _help("experiment", "switchgate")
    # the docstring breaks this sentence after "open (over"; the help must not
    assert "open (over the balanced set" in text
    assert "Example: deepatlas ingest --model fashion-cnn.pt" in _help("ingest")


def test_reflow_keeps_list_items_options_and_paragraphs() -> None:
    doc = "First line.\n\nJoined\nsentence here.\n- item one\n  continued\n- item two\n--data x starts a line\n\nLast."
    assert _reflow(doc) == ("First line.\n\nJoined sentence here.\n- item one continued\n- item two --data x starts a line"
                            "\n\nLast.")
