"""A real browser: headless Chromium logs into the local Neo4j Browser, runs a template, and
shows the graph view with the shipped style dropped onto it (README, "Neo4j Browser")."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import pytest

from deepatlas.db.graph import Graph
from deepatlas.db.queries import class_drivers
from deepatlas.db.server import LocalServer
from deepatlas.db.templates import load_template
from deepatlas.workflows.build import ingest
from deepatlas.workspace import Workspace

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_class_drivers_template_runs_in_neo4j_browser(neo4j_server: LocalServer, tiny_checkpoint: Path) -> None:
    from playwright.sync_api import sync_playwright

    with Graph(autostart=False) as g:
        ingest(Workspace(g, model=tiny_checkpoint, run="browser", limit=300, device="cpu"))
        _, _, want = class_drivers(g, "Sandal", k=3, run="browser")
    template = load_template("class_drivers").text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "neo4j-browser.png"
    with sync_playwright() as p:
        browser = _chromium(p)
        try:
            page = _logged_in(browser, neo4j_server)

            def run(text: str) -> None:
                page.click(".monaco-editor")
                page.keyboard.press("Control+A")
                page.keyboard.press("Delete")
                page.keyboard.insert_text(text)
                page.click('[data-testid="editor-Run"]')

            for line in (":param run => 'browser'", ":param class => 'Sandal'", ":param k => 3"):
                run(line)
                page.wait_for_timeout(800)
            run(template)
            page.wait_for_selector("text=Started streaming 3 records", timeout=30_000)
            page.screenshot(path=str(shot))
            table = page.locator("table").first.inner_text()

            # the README's route for the style: drop the .grass file onto the Browser window
            drop_file(page, "browser-style.grass", GRASS)
            page.wait_for_selector("text=node.Neuron", timeout=30_000)  # the :style frame it opens
            keys = json.dumps([row["key"] for row in want])
            run(f"MATCH (n:Neuron) WHERE n.key IN {keys} RETURN n")
            page.wait_for_selector("svg g.node", timeout=30_000)
            page.wait_for_timeout(1500)  # the force layout settles; captions are drawn with the nodes
            captions = page.eval_on_selector_all("svg g.node text", "els => els.map(e => e.textContent)")
            edge_captions = page.eval_on_selector_all("svg g.relationship text", "els => els.map(e => e.textContent)")
            page.screenshot(path=str(ARTIFACTS / "neo4j-browser-graph.png"))
        finally:
            browser.close()
    for row in want:  # the Browser shows the same three drivers the CLI finds
        assert f'"{row["layer"]}"' in table and str(row["unit"]) in table and f'{row["key"]}' in table
    assert shot.stat().st_size > 20_000
    # the graph view names each neuron as the style promises ({layer}/{index}), not by a float
    assert sorted(c.strip() for c in captions if c and c.strip()) == sorted(f'{row["layer"]}/{row["unit"]}' for row in want), captions
    # and the edges Browser draws between them name their quantity (three drivers co-activate)
    assert any(c and c.strip().startswith("r=") for c in edge_captions), edge_captions


def _chromium(p):  # type: ignore[no-untyped-def]
    return p.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"])


def _logged_in(browser, server: LocalServer):  # type: ignore[no-untyped-def]
    """A Browser page connected to ``server`` as the user neo4j."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server.http_uri}/browser/", wait_until="networkidle")
    page.fill('[data-testid="boltaddress"]', server.bolt_uri)
    page.fill('[data-testid="username"]', "neo4j")
    page.fill('[data-testid="password"]', server.read_password())
    page.click('[data-testid="connect"]')
    page.wait_for_selector("text=You are connected as user neo4j", timeout=30_000)
    return page


GRASS = resources.files("deepatlas.cypher").joinpath("browser-style.grass").read_text()


def drop_file(page, name: str, text: str) -> None:  # type: ignore[no-untyped-def]
    """Drop one file onto the Browser's window, as a user dragging it from their desktop does."""
    transfer = page.evaluate_handle(
        "([name, text]) => { const t = new DataTransfer(); t.items.add(new File([text], name)); return t; }", [name, text])
    page.dispatch_event(".filedrop", "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(".filedrop", "drop", {"dataTransfer": transfer})


def drop_zip(page, name: str, data: bytes) -> None:  # type: ignore[no-untyped-def]
    """Drop one binary file (a zip) onto the Browser's window, as ``drop_file`` drops text."""
    import base64

    transfer = page.evaluate_handle(
        """([name, b64]) => {
            const bin = atob(b64), bytes = new Uint8Array(bin.length);
            for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
            const t = new DataTransfer(); t.items.add(new File([bytes], name, {type: 'application/zip'})); return t; }""",
        [name, base64.b64encode(data).decode()])
    page.dispatch_event(".filedrop", "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(".filedrop", "drop", {"dataTransfer": transfer})


def test_saved_scripts_give_a_first_view_in_neo4j_browser(neo4j_server: LocalServer, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Issue 25.15: the README's route to a first view. `deepatlas query browser` writes a zip;
    dropped onto Browser it files the saved scripts; clicking "2 Set parameters" and then
    "3 What drives a class" shows the rows deepatlas's own class_drivers returns."""
    from playwright.sync_api import sync_playwright
    from typer.testing import CliRunner

    from deepatlas.cli.app import app
    from deepatlas.cypher.browser_scripts import ZIP_NAME, browser_scripts
    from deepatlas.db.queries import run_template

    run_name = "browser-scripts"
    with Graph(autostart=False) as g:
        ingest(Workspace(g, model=tiny_checkpoint, run=run_name, limit=300, device="cpu"))
        first_class = run_template(g, "class_list", {"run": run_name})[0]["name"]  # script 2's default
        _, _, want = class_drivers(g, first_class, k=10, run=run_name)
        want_pairs = run_template(g, "confused_pairs", {"run": run_name, "k": 10})
    out = CliRunner().invoke(app, ["query", "browser", "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert str(tmp_path / ZIP_NAME) in out.output.replace("\n", "")
    data = (tmp_path / ZIP_NAME).read_bytes()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "neo4j-browser-saved-scripts.png"
    with sync_playwright() as p:
        browser = _chromium(p)
        try:
            page = _logged_in(browser, neo4j_server)

            drop_zip(page, ZIP_NAME, data)
            page.click('[data-testid="navigationFavorites"]')  # the star: saved scripts
            page.click('[data-testid="expandFolder-deepatlas"]', timeout=30_000)
            titles = page.eval_on_selector_all(
                "[data-testid^=scriptTitle-]", "els => els.map(e => e.getAttribute('data-testid').slice(12))")

            def click_run(title: str) -> None:  # the triangle beside a script in the sidebar
                item = page.locator('[data-testid="savedScriptListItem"]',
                                    has=page.locator(f'[data-testid="scriptTitle-{title}"]'))
                item.hover()
                item.locator('[data-testid="savedScriptsButton-Run"]').click()

            def rows_of_newest_frame(expect: int) -> list[list[str]]:
                frame = page.locator('[data-testid="frame"]').first
                frame.locator(f"text=Started streaming {expect} records").wait_for(timeout=30_000)
                return frame.locator("table").first.evaluate(
                    "t => Array.from(t.querySelectorAll('tbody tr'))"
                    ".map(tr => Array.from(tr.querySelectorAll('td[role=cell]')).map(td => td.innerText.trim()))")

            click_run("2 Set parameters")
            # four :param lines, each ticked once it is set (the lambdas :param [run] => {...} ask the server)
            page.wait_for_function(
                """() => { const f = document.querySelector('[data-testid="frame"]');
                           return f && f.querySelectorAll('[data-testid="multi-statement-list-icon"][title="Status: success"]').length === 4; }""",
                timeout=30_000)
            click_run("3 What drives a class")
            drivers = rows_of_newest_frame(len(want))
            page.wait_for_timeout(1000)  # the new frame slides in above the old ones
            page.screenshot(path=str(shot))
            click_run("4 Confused pairs")
            pairs = rows_of_newest_frame(len(want_pairs))
        finally:
            browser.close()
    # the sidebar holds every generated script, in the generated order, under the folder deepatlas
    assert titles == [s.title for s in browser_scripts()], titles
    # the clicked question shows exactly deepatlas's class_drivers rows for the newest run's first class
    assert [row[-1] for row in drivers] == [json.dumps(r["key"]) for r in want], drivers
    for row, r in zip(drivers, want, strict=True):
        assert row[:3] == [json.dumps(r["layer"]), str(r["unit"]), json.dumps(r["kind"])], row
        assert float(row[3]) == pytest.approx(r["r"], abs=1e-9), row
    got_pairs = [row[:3] for row in pairs]
    assert got_pairs == [[json.dumps(r["true"]), json.dumps(r["predicted"]), str(r["count"])] for r in want_pairs], got_pairs
    assert shot.stat().st_size > 20_000
