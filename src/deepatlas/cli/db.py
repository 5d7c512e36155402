"""`deepatlas db start|stop|status|install`: the managed local Neo4j."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from deepatlas.cli._common import JsonOpt, cli_errors, console, err, print_json
from deepatlas.db.server import LocalServer, ServerStatus, min_free_mb
from deepatlas.errors import UsageError

app = typer.Typer(help="Run the managed local Neo4j 5.26 server (127.0.0.1 only, password on).", no_args_is_help=True)



def _refuse_if_external() -> None:
    if os.environ.get("NEO4J_URI"):
        raise UsageError(
            f"NEO4J_URI is set ({os.environ['NEO4J_URI']}): deepatlas uses that server and manages no local one; "
            "unset it to use `deepatlas db`"
        )


def _render(st: ServerStatus) -> None:
    if not st.running:
        state = "[yellow]stopped[/]"
    elif st.database == "online":
        state = "[green]running[/], database online"
    else:  # the process lives but the database does not serve (a full disk broke its log, say)
        state = f"[red]running, database {st.database or 'not answering'}[/]: see the log below"
    console.print(f"Neo4j {st.version or ''} {state}" + (f" (pid {st.pid})" if st.pid else ""))
    if st.free_mb is not None:
        low = st.free_mb < min_free_mb()
        console.print(f"  Disk      {st.free_mb:,.0f} MB free" + (" [red](below the margin: ingests stop; free space)[/]" if low else ""))
    console.print(f"  Bolt      {st.bolt_uri}")
    console.print(f"  Browser   {st.browser_url}")
    console.print("  User      neo4j")
    console.print(f"  Password  in {st.password_file} (mode 0600)")
    console.print(f"  Home      {st.home}")
    console.print(f"  Log       {st.log_file}")


@app.command()
@cli_errors
def install() -> None:
    """Fetch the Neo4j jars from Maven Central into the cache (done by `start` when needed)."""
    server = LocalServer()
    lib = server.install()
    console.print(f"Neo4j jars ready in {lib}")


@app.command()
@cli_errors
def start(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for Bolt to answer.")] = 180.0,
    json_out: JsonOpt = False,
) -> None:
    """Start the server if it is not running, and wait until it answers on Bolt.

    The first start fetches the jars (needs Maven and the network once) and generates the
    password. Ports: DEEPATLAS_BOLT_PORT / DEEPATLAS_HTTP_PORT (7687 / 7474).
    """
    _refuse_if_external()
    server = LocalServer()
    if not json_out and server.pid() is None:
        err.print("starting Neo4j ...")
    st = server.start(timeout=timeout)
    if json_out:
        print_json(st)
    else:
        _render(st)


@app.command()
@cli_errors
def stop(json_out: JsonOpt = False) -> None:
    """Stop the server cleanly (its data stays)."""
    _refuse_if_external()
    was_running = LocalServer().stop()
    if json_out:
        print_json({"stopped": was_running})
    else:
        console.print("Neo4j stopped" if was_running else "Neo4j was not running")


@app.command()
@cli_errors
def status(json_out: JsonOpt = False) -> None:
    """Say whether the server runs, its version, URIs, and where the password file is."""
    _refuse_if_external()
    st = LocalServer().status()
    if json_out:
        print_json(st)
    else:
        _render(st)
