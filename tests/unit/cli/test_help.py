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


def test_help_at_80_columns_cuts_nothing_and_names_values() -> None:
    text = _help("ingest")
    assert "…" not in text and "<int range>" not in text and "<str>" not in text and "<bool>" not in text
    assert "--limit LIMIT" in text and "package.module:factory" in text and "[default: fashion-mnist]" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_inspect_shows_each_layers_output_per_image() -> None:
    r = CliRunner().invoke(app, ["inspect", "--model", "torchvision:resnet18", "--num-classes", "3", "--input-size", "3x32x32",
                                 "--images", "50"], env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.output
    assert "output per image" in r.output
    conv1 = next(line for line in r.output.splitlines() if "│ conv1 " in line)
    assert "64x16x16" in conv1 and "x64x16x16" not in conv1  # no batch dimension of the dry pass
