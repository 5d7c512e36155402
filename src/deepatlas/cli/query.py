"""`deepatlas query drivers|list|run`: answers from the Cypher template library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.syntax import Syntax
from rich.table import Table

from deepatlas.cli._common import JsonOpt, RunOpt, cli_errors, console, print_json
from deepatlas.db.graph import Graph
from deepatlas.db.queries import class_drivers, run_template
from deepatlas.db.runs import correlation_name, resolve_run
from deepatlas.db.templates import list_templates, load_template
from deepatlas.errors import UsageError

app = typer.Typer(help="Ask the graph: which neurons drive a class, and any shipped Cypher template.", no_args_is_help=True)



def _table(rows: list[dict[str, object]], title: str) -> Table:
    table = Table(title=title)
    for col in rows[0] if rows else []:
        table.add_column(str(col))
    for row in rows:
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else ("[list]" if isinstance(v, list) else str(v)) for v in row.values()))
    return table


@app.command()
@cli_errors
def drivers(
    class_name: Annotated[str, typer.Option("--class", "-c", help="Class name, any case (e.g. Sandal).")],
    k: Annotated[int, typer.Option("-k", help="How many neurons.")] = 10,
    run: RunOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The k hidden neurons most correlated with a class (template class_drivers)."""
    if k <= 0 or k > 100_000:  # as class_drivers checks, but before connecting
        raise UsageError(f"k must lie in 1..100000, got {k}")
    with Graph() as g:
        info, stored, rows = class_drivers(g, class_name, k=k, run=run)
    if json_out:
        print_json({"run": info.name, "class": stored, "correlation": info.correlation, "drivers": rows})
        return
    console.print(_table([{k2: v for k2, v in r.items() if k2 != "key"} for r in rows],
                         f"drivers of {stored} in {info.name} (r = {correlation_name(info.correlation)})"))


@app.command("list")
@cli_errors
def list_cmd(json_out: JsonOpt = False) -> None:
    """The shipped templates, their parameters and what they answer."""
    templates = list_templates()
    if json_out:
        print_json([{"name": t.name, "description": t.description, "params": t.params} for t in templates])
        return
    table = Table(title="Cypher templates (deepatlas query run NAME -p key=value)")
    for col in ("name", "params", "description"):
        table.add_column(col)
    for t in templates:
        table.add_row(t.name, ", ".join(f"{k}:{v}" for k, v in t.params.items()), t.description)
    console.print(table)


@app.command()
@cli_errors
def show(name: Annotated[str, typer.Argument(help="Template name.")]) -> None:
    """Print a template's Cypher, to paste into Neo4j Browser after `:param` lines: the file's
    bytes as they are (never wrapped or cut at the terminal's width), highlighted only on a
    terminal."""
    text = load_template(name).text
    if sys.stdout.isatty():
        console.print(Syntax(text, "cypher", theme="ansi_dark", word_wrap=False), soft_wrap=True)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


@app.command()
def style() -> None:
    """Print the Neo4j Browser style (colours by label, captions): save it as a .grass file and drop
    it onto the Browser window (pasting it after `:style` in the editor is another format)."""
    from importlib import resources

    print(resources.files("deepatlas.cypher").joinpath("browser-style.grass").read_text(), end="")


@app.command()
@cli_errors
def browser(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the zip into (created if missing).")] = Path("."),
    run: Annotated[str | None, typer.Option("--run", help="Run the scripts start on (default: the newest complete run, chosen by Browser when script 2 runs).")] = None,
    class_name: Annotated[str | None, typer.Option("--class", "-c", help="Class script 2 picks (default: the run's first class).")] = None,
    k: Annotated[int, typer.Option("-k", help="Rows the top-k questions show.")] = 10,
    community: Annotated[int, typer.Option("--community", help="Community script 7 opens.")] = 0,
) -> None:
    """Write a first view for Neo4j Browser: a zip of saved scripts to drop onto its window.

    Drop deepatlas-browser-scripts.zip onto the Browser window (http://127.0.0.1:7474/browser/;
    `deepatlas db status` prints the address) and Browser files the scripts in its sidebar:
    Favorites (the star icon), folder "deepatlas" under Local scripts. It keeps them in the web
    browser's storage, so this is done once.

    The scripts, in order: "1 Start here" lists the runs and their classes; "2 Set parameters"
    sets :param run, class, k and community; then what drives a class, the confused pairs, the
    confused pairs with the neurons they share, the communities, one community's members, the
    classes and the layers. Click the triangle beside a script to run it: script 2 first, then
    any question. Typing `:param class => 'Sandal'` in the editor changes one parameter.

    Each question is a shipped template (`deepatlas query show NAME`) and gives the rows
    `deepatlas query run NAME` gives. This command only writes the file; it never connects.

    Example: deepatlas query browser --out ~/Desktop --class Sandal
    """
    from deepatlas.cypher.browser_scripts import ZIP_NAME, browser_scripts, scripts_zip

    scripts = browser_scripts(run=run, class_name=class_name, k=k, community=community)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; name a folder")
    out.mkdir(parents=True, exist_ok=True)
    target = out / ZIP_NAME
    target.write_bytes(scripts_zip(scripts))
    console.print(f"wrote {target} ({len(scripts)} saved scripts)", highlight=False, soft_wrap=True)
    console.print("Drop it onto the Neo4j Browser window, open Favorites (the star) > Local scripts > "
                  "deepatlas, run 2 (set parameters), then any question.", highlight=False)


@app.command("run")
@cli_errors
def run_cmd(
    name: Annotated[str, typer.Argument(help="Template name (see `deepatlas query list`).")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value; repeat for each parameter.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a template with parameters, in a read transaction.

    `run` defaults to the run last used (see --run elsewhere) when the template takes it and -p run= is absent.
    Example: deepatlas query run confused_pairs -p k=5
    """
    template = load_template(name)
    raw: dict[str, str] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"malformed parameter {item!r}; write -p key=value")
        if key.strip() in raw:
            raise UsageError(f"parameter {key.strip()} given twice")
        raw[key.strip()] = value
    if "run" in template.params and "run" not in raw:
        template.bind({**raw, "run": "-"})  # every other parameter checked before connecting
    else:
        template.bind(raw)
    with Graph() as g:
        if "run" in template.params and "run" not in raw:
            raw["run"] = resolve_run(g).name
        rows = run_template(g, name, template.bind(raw))
    if json_out:
        print_json(rows)
        return
    if not rows:
        console.print("no rows")
        return
    console.print(_table(rows, f"{name} on run {raw['run']}" if "run" in raw else name))
