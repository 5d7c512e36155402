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
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{neo4j_server.http_uri}/browser/", wait_until="networkidle")
            page.fill('[data-testid="boltaddress"]', neo4j_server.bolt_uri)
            page.fill('[data-testid="username"]', "neo4j")
            page.fill('[data-testid="password"]', neo4j_server.read_password())
            page.click('[data-testid="connect"]')
            page.wait_for_selector("text=You are connected as user neo4j", timeout=30_000)

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


GRASS = resources.files("deepatlas.cypher").joinpath("browser-style.grass").read_text()


def drop_file(page, name: str, text: str) -> None:  # type: ignore[no-untyped-def]
    """Drop one file onto the Browser's window, as a user dragging it from their desktop does."""
    transfer = page.evaluate_handle(
        "([name, text]) => { const t = new DataTransfer(); t.items.add(new File([text], name)); return t; }", [name, text])
    page.dispatch_event(".filedrop", "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(".filedrop", "drop", {"dataTransfer": transfer})
