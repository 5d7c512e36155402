"""A real browser: headless Chromium logs into the local Neo4j Browser and runs a template."""

from __future__ import annotations

import shutil
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
        finally:
            browser.close()
    for row in want:  # the Browser shows the same three drivers the CLI finds
        assert f'"{row["layer"]}"' in table and str(row["unit"]) in table and f'{row["key"]}' in table
    assert shot.stat().st_size > 20_000
