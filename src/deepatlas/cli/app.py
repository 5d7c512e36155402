"""The root ``deepatlas`` command: joins the command groups."""

from __future__ import annotations

from typing import Annotated

import typer

from deepatlas import __version__
from deepatlas.cli import analyze, audit, db, experiment, explain, export, query, runs
from deepatlas.cli._common import install_signal_handlers, plain_help, reflow_help, setup_logging
from deepatlas.cli.compare import compare
from deepatlas.cli.demo import demo
from deepatlas.cli.ingest import ingest
from deepatlas.cli.inspect import inspect
from deepatlas.cli.train import train
from deepatlas.paths import home_dir

app = typer.Typer(
    name="deepatlas",
    help=(
        "What inside your model drives a class, and why does it confuse two?\n\n"
        "deepatlas runs a trained PyTorch classifier over a data set and writes its neurons, "
        "classes, pixels and their co-activation into Neo4j, then answers questions from it.\n\n"
        "Start with `deepatlas demo`. Point at any Neo4j with NEO4J_URI / NEO4J_USERNAME / "
        "NEO4J_PASSWORD; otherwise a local server is managed under $DEEPATLAS_HOME."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"deepatlas {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """deepatlas: a trained classifier as a Neo4j graph."""
    setup_logging(home_dir() / "logs" / "driver.log")


app.add_typer(db.app, name="db")
app.command(rich_help_panel="Build")(train)
app.command(rich_help_panel="Build")(ingest)
app.command(rich_help_panel="Build")(inspect)
app.command(rich_help_panel="Start here")(demo)
app.add_typer(query.app, name="query")
app.add_typer(runs.app, name="runs")
app.add_typer(analyze.app, name="analyze")
app.add_typer(audit.app, name="audit")
app.add_typer(export.app, name="export")
app.command(rich_help_panel="Analyse")(compare)
app.add_typer(experiment.app, name="experiment")
app.add_typer(explain.app, name="explain")
reflow_help(app)
plain_help(app)


def main() -> None:
    install_signal_handlers()
    app()


if __name__ == "__main__":
    main()
