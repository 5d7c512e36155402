"""Faults against a real server of their own: killed mid-ingest, stopped between batches,
concurrent ingests, readers during an ingest. Nothing is left complete with partial data."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepatlas.db.graph import Graph
from deepatlas.db.runs import list_runs, resolve_run
from deepatlas.db.server import LocalServer
from deepatlas.db.settings import Settings
from deepatlas.errors import GraphError, NotFoundError
from deepatlas.workflows.build import ingest

from .conftest import free_port

pytestmark = pytest.mark.e2e
EDGES = ("coactivation",)


@pytest.fixture(scope="module")
def victim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A second managed server that these tests may kill."""
    server = LocalServer(tmp_path_factory.mktemp("victim") / "neo4j", bolt_port=free_port(), http_port=free_port())
    server.start()
    yield server
    server.stop()


def _settings(server: LocalServer) -> Settings:
    return Settings(server.bolt_uri, "neo4j", server.read_password(), managed=True)


def _counts(server: LocalServer) -> dict[str, int]:
    with Graph(_settings(server), retry_seconds=3) as g:
        return {r["status"]: r["n"] for r in g.read("MATCH (r:Run) RETURN r.status AS status, count(r) AS n")}


def test_server_killed_mid_ingest_then_recovered(victim: LocalServer, tiny_checkpoint: Path) -> None:
    g = Graph(_settings(victim), retry_seconds=3)
    pid = victim.pid()
    assert pid is not None
    calls = {"n": 0}

    def kill_after_first_batch(stage: str, advance: int, total: int) -> None:
        if stage == "write":
            calls["n"] += 1
            if calls["n"] == 2:
                os.killpg(pid, signal.SIGKILL)  # a crash, not a clean stop

    with pytest.raises(GraphError, match="cannot reach Neo4j"):
        ingest(tiny_checkpoint, limit=400, run_name="crash", device="cpu", graph=g, edges=EDGES, progress=kill_after_first_batch)
    g.close()
    assert victim.pid() is None  # the pid file was stale and is cleared
    victim.start()  # `db start` after a crash recovers the store
    with Graph(_settings(victim), retry_seconds=3) as g2:
        with pytest.raises(NotFoundError):
            resolve_run(g2, "crash")  # readers never see the half-written run
        left = [r.status for r in list_runs(g2, include_incomplete=True) if r.name == "crash"]
        assert left == ["running"]  # the crash left it running: never complete
        report = ingest(tiny_checkpoint, limit=400, run_name="crash", device="cpu", graph=g2, edges=EDGES)
        assert [r.status for r in list_runs(g2, include_incomplete=True) if r.name == "crash"] == ["complete"]
        n = g2.read("MATCH (n:Neuron) WHERE n.run STARTS WITH 'crash@' RETURN count(n) AS n")[0]["n"]
        assert n == report.nodes["Neuron"]  # the leftovers of the crashed attempt are gone


def test_server_stopped_between_batches(victim: LocalServer, tiny_checkpoint: Path) -> None:
    g = Graph(_settings(victim), retry_seconds=3)
    before = _counts(victim)

    def stop_once(stage: str, advance: int, total: int) -> None:
        if stage == "write" and victim.pid() is not None:
            victim.stop()

    with pytest.raises(GraphError):
        ingest(tiny_checkpoint, limit=300, run_name="stopped", device="cpu", graph=g, edges=EDGES, progress=stop_once)
    g.close()
    victim.start()
    after = _counts(victim)
    assert after.get("complete", 0) == before.get("complete", 0)  # nothing new is marked complete
    with Graph(_settings(victim), retry_seconds=3) as g2:
        ingest(tiny_checkpoint, limit=300, run_name="stopped", device="cpu", graph=g2, edges=EDGES)
        assert resolve_run(g2, "stopped").status == "complete"


def test_two_ingests_at_once_and_readers_during_an_ingest(victim: LocalServer, tiny_checkpoint: Path) -> None:
    seen_during: list[list[str]] = []
    errors: list[BaseException] = []

    def reader(stage: str, advance: int, total: int) -> None:
        if stage == "write" and not seen_during:
            with Graph(_settings(victim), retry_seconds=3) as r:
                seen_during.append([x.name for x in list_runs(r)])

    def job(name: str, progress) -> None:  # type: ignore[no-untyped-def]
        try:
            with Graph(_settings(victim), retry_seconds=3) as g:
                ingest(tiny_checkpoint, limit=300, run_name=name, device="cpu", graph=g, edges=EDGES, progress=progress)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=job, args=("para-a", reader)), threading.Thread(target=job, args=("para-b", lambda *a: None))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert seen_during and "para-a" not in seen_during[0]  # a run being written is invisible
    with Graph(_settings(victim), retry_seconds=3) as g:
        assert resolve_run(g, "para-a").status == resolve_run(g, "para-b").status == "complete"
