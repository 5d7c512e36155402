"""The disk check before a write counts this write's size, not only a fixed margin."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from deepatlas.db import runs
from deepatlas.db.server import LocalServer
from deepatlas.errors import GraphError


def test_the_write_size_grows_with_the_rows() -> None:
    assert runs.write_size_mb({}, {}) == 0
    one_million_edges = runs.write_size_mb({"Neuron": 0}, {"COACTIVATES": 1_000_000})
    assert one_million_edges == pytest.approx(1_000_000 * runs.EDGE_BYTES / 2**20)
    assert runs.write_size_mb({"Neuron": 1_000}, {}) == pytest.approx(1_000 * runs.NODE_BYTES / 2**20)


def test_a_write_that_would_cross_the_margin_is_refused_before_it_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = SimpleNamespace(settings=SimpleNamespace(managed=True))
    monkeypatch.setattr(LocalServer, "free_mb", lambda self: 1_000.0)
    monkeypatch.setenv("DEEPATLAS_MIN_FREE_MB", "512")
    runs._check_free_space(graph, 400)  # type: ignore[arg-type]  # 600 MB stay free
    with pytest.raises(GraphError, match=r"1,000 MB free; this run needs about 600 MB and 512 MB must stay free"):
        runs._check_free_space(graph, 600)  # type: ignore[arg-type]
    external = SimpleNamespace(settings=SimpleNamespace(managed=False))
    runs._check_free_space(external, 10**9)  # type: ignore[arg-type]  # another server's disk is not ours to judge


def test_the_write_stops_when_the_disk_falls_under_half_the_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = SimpleNamespace(settings=SimpleNamespace(managed=True))
    monkeypatch.setenv("DEEPATLAS_MIN_FREE_MB", "512")
    seen: list[int] = []
    free = {"mb": 300.0}
    monkeypatch.setattr(LocalServer, "free_mb", lambda self: free["mb"])
    watched = runs._watch_disk(graph, seen.append)  # type: ignore[arg-type]
    assert watched is not None
    watched(50)
    assert seen == [50]
    free["mb"] = 200.0
    with pytest.raises(GraphError, match="stopped writing: the disk"):
        watched(50)
    assert seen == [50]
