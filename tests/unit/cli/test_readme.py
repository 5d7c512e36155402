"""Every `deepatlas ...` line in the README parses against the CLI as it is (issue 18, item 13).

Each line is split like a shell would and handed to click's own parser, command by command,
without running anything: an option that does not exist, a value of the wrong type or a
missing argument fails here. The commands cheap enough to run are run by the e2e suite.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from deepatlas.cli.app import app

README = Path(__file__).resolve().parents[3] / "README.md"


def _readme_commands() -> list[str]:
    text = README.read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("deepatlas "):
                lines.append(line)
    return lines


def _parse(args: list[str]) -> None:
    """click's (typer's vendored click's) own parsing, group by group; raises its usage errors."""
    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("deepatlas", list(args), resilient_parsing=False)
    while hasattr(cmd, "resolve_command") and _rest(ctx):
        rest = _rest(ctx)
        name, sub, remaining = cmd.resolve_command(ctx, rest)
        assert sub is not None, f"unknown command {name!r}"
        cmd, ctx = sub, sub.make_context(name or "", remaining, parent=ctx)


def _rest(ctx: typer.Context) -> list[str]:
    """A group's unparsed words: the subcommand (click keeps it apart) and its arguments."""
    protected = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", None) or []
    return [*protected, *ctx.args]


COMMANDS = _readme_commands()


def test_the_readme_has_commands() -> None:
    assert len(COMMANDS) > 30


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_command_parses(line: str) -> None:
    words = shlex.split(line, comments=True)
    words = words[: words.index("|")] if "|" in words else words
    _parse(words[1:])


def test_the_parser_check_can_fail() -> None:
    with pytest.raises(Exception, match="No such option"):
        _parse(["ingest", "--no-such-option"])
    with pytest.raises(typer.BadParameter):
        _parse(["train", "--epochs", "many"])
    with pytest.raises(Exception, match="No such command"):
        _parse(["quer", "drivers"])
    with pytest.raises(Exception, match="No such option"):
        _parse(["query", "drivers", "--class", "Sandal", "--bogus"])  # options of a nested command too
