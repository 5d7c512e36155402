"""Which run a command uses without --run (issue 18.3): the one last pointed at; never a guess
among the runs of several models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from deepatlas.cli.app import app
from deepatlas.db import runs
from deepatlas.db.graph import Graph
from deepatlas.errors import UsageError
from deepatlas.models import load_checkpoint, save_checkpoint
from deepatlas.workflows.build import ingest
from deepatlas.workspace import Workspace

pytestmark = pytest.mark.e2e


def test_the_run_last_pointed_at_else_ask(graph: Graph, tiny_checkpoint: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state" / "last_run.json"
    monkeypatch.setattr(runs, "_state_file", lambda: state)
    ckpt = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        for p in ckpt.model.parameters():
            p.mul_(0.5)
    other = save_checkpoint(tmp_path / "halved.pt", ckpt.model, ckpt.arch, ckpt.arch_config,
                            {k: v for k, v in ckpt.meta.items() if k != "weights_sha256"})
    ingest(Workspace(graph, run="choice-a", model=tiny_checkpoint, limit=100, device="cpu"), edges=("coactivation",))
    assert runs.resolve_run(graph).name == "choice-a"  # the ingest is remembered
    ingest(Workspace(graph, run="choice-b", model=other, limit=100, device="cpu"), edges=("coactivation",))
    assert runs.resolve_run(graph).name == "choice-b"
    assert runs.resolve_run(graph, "choice-a").name == "choice-a"  # an explicit --run is remembered too
    assert runs.resolve_run(graph).name == "choice-a"
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    state.unlink()  # nothing remembered, runs of two models stored: no guess
    with pytest.raises(UsageError, match=r"runs of \d+ models are stored.*choice-b.*pass --run"):
        runs.resolve_run(graph)
    r = CliRunner().invoke(app, ["query", "drivers", "--class", "Bag", "--json"])
    assert r.exit_code != 0 and "pass --run" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["query", "drivers", "--class", "Bag", "--run", "choice-b", "--json"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["query", "drivers", "--class", "Bag", "--json"])
    assert r.exit_code == 0 and "choice-b" in r.stdout, r.output
    runs.delete_run(graph, "choice-b")  # the remembered run is gone: never returned again
    assert runs.last_run(graph) == "choice-b"
    try:
        assert runs.resolve_run(graph).name != "choice-b"
    except UsageError as exc:  # other models' runs of this session still stored
        assert "pass --run" in str(exc)


def test_a_subset_ingest_does_not_move_the_default_run(graph: Graph, tiny_checkpoint: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state" / "last_run.json"
    monkeypatch.setattr(runs, "_state_file", lambda: state)
    first = ingest(Workspace(graph, run="subset-whole", model=tiny_checkpoint, limit=120, device="cpu"), edges=("coactivation",))
    assert first.default_run == "subset-whole"  # nothing was the default: the ingest becomes it
    r = CliRunner().invoke(app, ["ingest", "--model", str(tiny_checkpoint), "--limit", "60", "--edges", "coactivation",
                                 "--run", "quick-look", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "commands without --run keep using run subset-whole" in r.output
    assert runs.resolve_run(graph).name == "subset-whole"
    r = CliRunner().invoke(app, ["analyze", "overlap", "--dry-run"])
    assert r.exit_code == 0 and "subset-whole: class pairs by overlap" in r.output, r.output  # the table names its run
    assert runs.resolve_run(graph, "quick-look").name == "quick-look"  # asked for by name: now the default
    assert runs.resolve_run(graph).name == "quick-look"
