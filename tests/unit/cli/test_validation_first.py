"""Bad input is refused before any work (issue 18): with the database unreachable, each of these
commands must still answer with its own one-line reason, not "cannot reach Neo4j" - proof that
the check runs before the server, the model or the data is touched (the Workspace opens them
lazily)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepatlas.cli.app import app

CASES = [
    (["experiment", "knockout", "--class", "Bag", "--ks", "1,x"], "--ks must be"),
    (["experiment", "knockout", "--class", "Bag", "--value", "bogus"], "value must be one of zero, mean"),
    (["experiment", "knockout", "--class", "Bag", "--rank-by", "bogus"], "unknown ranking 'bogus'"),
    (["experiment", "knockout", "--class", "Bag", "--output", "bogus"], "output must be prob or logit"),
    (["experiment", "activate", "-k", "0"], "k must be >= 1"),
    (["experiment", "activate", "--value", "zero"], "value must be one of class-mean, max"),
    (["experiment", "activate", "--by", "bogus"], "unknown ranking 'bogus'"),
    (["experiment", "community", "--community", "1", "--value", "bogus"], "value must be one of zero, mean"),
    (["experiment", "shared", "--a", "Bag", "--b", "bag"], "two different classes"),
    (["experiment", "switchgate", "--class", "Bag", "--repeats", "0"], "--repeats"),
    (["analyze", "communities", "--negative", "bogus"], "negative must be one of drop, abs"),
    (["analyze", "communities", "--algorithm", "bogus"], "algorithm must be one of leiden"),
    (["analyze", "communities", "--graph", "bogus"], "graph must be one of complete, stored"),
    (["analyze", "centrality", "--negative", "bogus"], "negative must be one of drop, abs"),
    (["query", "drivers", "--class", "Bag", "-k", "0"], "k must lie in 1..100000"),
    (["query", "run", "class_drivers", "-p", "k=abc", "-p", "class=Bag"], "parameter k must be int"),
    (["query", "run", "class_drivers", "-p", "k=3"], "needs -p class"),
    (["query", "run", "nope"], "no template 'nope'"),
    (["explain", "heatmap", "--image", "1", "--method", "lrp"], "method must be one of influence, gradient"),
    (["explain", "perturb", "--image", "1", "--toward", "Bag", "--step-size", "0"], "--step-size must be > 0"),
    (["explain", "factors", "-r", "0"], "ranks must be >= 1"),
    (["explain", "disagree", "--by", "bogus"], "by must be one of influence, gradient"),
    (["ingest", "--pixel-grid", "3y3"], "--pixel-grid takes"),
    (["ingest", "--input-size", "0x0"], "--input-size takes"),
    (["ingest", "--model", "torchvision:nope"], "torchvision has no classification model 'nope'"),
    (["experiment", "knockout", "--class", "Bag", "--model", "torchvision:resnet18", "--input-size", "abc"], "--input-size takes"),
    (["inspect", "--mean", "a,b"], "--mean takes"),
]


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(c[0][:3]) + f" #{i}" for i, c in enumerate(CASES)])
def test_refused_before_any_work(argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEO4J_URI", "bolt://127.0.0.1:1")  # nothing listens: touching the database would say so
    monkeypatch.setenv("NEO4J_PASSWORD", "x")
    monkeypatch.setenv("DEEPATLAS_HOME", str(tmp_path))
    r = CliRunner().invoke(app, argv)
    assert r.exit_code != 0, r.output
    assert message in r.output, r.output
    assert "cannot reach" not in r.output and "Traceback" not in r.output
