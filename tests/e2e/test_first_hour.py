"""Issue 18 against the real server: what a new user following the README tripped over."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepatlas.cli.app import app
from deepatlas.db.graph import Graph
from deepatlas.db.runs import find_run

pytestmark = pytest.mark.e2e
runner = CliRunner()


def _ingest(*args: str) -> object:
    return runner.invoke(app, ["ingest", "--edges", "coactivation", "--device", "cpu", "--json", *args])


def test_another_checkpoint_never_replaces_a_run_without_replace(neo4j_server, tiny_checkpoint: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = _ingest("--model", str(tiny_checkpoint), "--limit", "300", "--run", "guarded")
    assert r.exit_code == 0, r.output
    # the same weights on the same data: re-ingested in place, no flag needed
    r = _ingest("--model", str(tiny_checkpoint), "--limit", "300", "--run", "guarded")
    assert r.exit_code == 0, r.output
    # other data (a README example's --limit 200) under the same name: refused, the run kept
    r = _ingest("--model", str(tiny_checkpoint), "--limit", "200", "--run", "guarded")
    assert r.exit_code == 1
    assert "run 'guarded' already holds 300 images of fashion-mnist/test" in r.output and "--replace" in r.output
    with Graph(autostart=False) as g:
        kept = find_run(g, "guarded")
        assert kept is not None and kept.n_samples == 300
    r = _ingest("--model", str(tiny_checkpoint), "--limit", "200", "--run", "guarded", "--replace")
    assert r.exit_code == 0, r.output
    with Graph(autostart=False) as g:
        now = find_run(g, "guarded")
        assert now is not None and now.n_samples == 200 and now.key != kept.key


def test_the_default_run_name_comes_from_the_weights_file(neo4j_server, tiny_checkpoint: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mine = tmp_path / "my.pt"
    shutil.copy(tiny_checkpoint, mine)
    r = _ingest("--model", str(mine), "--limit", "100")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["run"] == "my-fashion-mnist-test"


def test_commands_say_which_run_they_use_and_refuse_an_empty_name(neo4j_server, tiny_checkpoint: Path) -> None:  # type: ignore[no-untyped-def]
    r = _ingest("--model", str(tiny_checkpoint), "--limit", "400", "--run", "latest-one")  # more images than any run before
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["query", "drivers", "--class", "Sandal", "-k", "2", "--json"])
    assert r.exit_code == 0, r.output
    assert "using run latest-one, the run last used here" in r.stderr  # the ingest just wrote it
    assert json.loads(r.stdout)["run"] == "latest-one"  # stdout stays pure JSON
    r = runner.invoke(app, ["query", "drivers", "--class", "Sandal", "--run", ""])
    assert r.exit_code == 1 and "--run must name a run" in r.output and "Traceback" not in r.output


def test_runs_list_never_cuts_a_name(neo4j_server, tiny_checkpoint: Path) -> None:  # type: ignore[no-untyped-def]
    long = "fashion-cnn-fashion-mnist-test-with-a-long-and-telling-name"
    r = _ingest("--model", str(tiny_checkpoint), "--limit", "100", "--run", long)
    assert r.exit_code == 0, r.output
    for flags in ([], ["--all"]):
        r = runner.invoke(app, ["runs", "list", *flags], env={"COLUMNS": "80"})
        assert r.exit_code == 0 and long in r.output, r.output
        assert all(len(line) <= 80 for line in r.output.splitlines()), r.output  # nothing wraps inside a word


def test_the_server_home_is_private(neo4j_server) -> None:  # type: ignore[no-untyped-def]
    home = neo4j_server.home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "data").stat().st_mode) == 0o700
    auth = next(home.rglob("auth.ini"))
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    for path in [home / "password", neo4j_server.log_file, *home.joinpath("data").rglob("*")]:
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    assert os.access(home / "password", os.R_OK)


def test_a_disk_below_the_margin_stops_the_ingest_before_any_write(neo4j_server, tiny_checkpoint: Path,  # type: ignore[no-untyped-def]
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPATLAS_MIN_FREE_MB", str(10**12))  # a margin no disk has: the same path as a full one
    r = _ingest("--model", str(tiny_checkpoint), "--limit", "100", "--run", "no-room")
    assert r.exit_code == 1 and "Traceback" not in r.output
    line = next(x for x in r.output.splitlines() if x.strip())
    assert "MB free; this run needs about" in line and "must stay free" in line and "Nothing was written." in line
    assert "try again" not in line.replace("ingest again", "")
    with Graph(autostart=False) as g:
        assert g.read("MATCH (r:Run {name: 'no-room'}) RETURN count(r) AS c")[0]["c"] == 0
    r = runner.invoke(app, ["db", "status"])
    assert r.exit_code == 0 and "database online" in r.output and "below the margin" in r.output
    monkeypatch.delenv("DEEPATLAS_MIN_FREE_MB")
    r = runner.invoke(app, ["db", "status", "--json"])
    st = json.loads(r.stdout)
    assert st["database"] == "online" and st["free_mb"] > 0


def test_a_disk_filling_during_the_write_stops_it_and_keeps_earlier_runs(neo4j_server, tiny_checkpoint: Path,  # type: ignore[no-untyped-def]
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from deepatlas.db.server import LocalServer

    r = _ingest("--model", str(tiny_checkpoint), "--limit", "100", "--run", "kept-safe")
    assert r.exit_code == 0, r.output
    real = LocalServer.free_mb
    calls = {"n": 0}

    def filling(self: LocalServer) -> float | None:  # the real disk, then something else fills it mid-write
        calls["n"] += 1
        return real(self) if calls["n"] <= 3 else 100.0

    monkeypatch.setattr(LocalServer, "free_mb", filling)
    monkeypatch.setenv("DEEPATLAS_MIN_FREE_MB", "512")
    monkeypatch.setenv("DEEPATLAS_WRITE_BATCH", "50")
    r = _ingest("--model", str(tiny_checkpoint), "--limit", "100", "--run", "filling-up")
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert "stopped writing: the disk" in r.output and "earlier runs are intact" in r.output
    monkeypatch.setattr(LocalServer, "free_mb", real)
    with Graph(autostart=False) as g:
        assert find_run(g, "filling-up") is None  # never complete
        kept = find_run(g, "kept-safe")
        assert kept is not None and kept.status == "complete"
    r = runner.invoke(app, ["db", "status", "--json"])
    assert json.loads(r.stdout)["database"] == "online"
