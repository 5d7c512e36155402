"""Faults against a real server of their own: killed mid-ingest, stopped between batches,
concurrent ingests, readers during an ingest. Nothing is left complete with partial data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepatlas.db.graph import Graph
from deepatlas.db.runs import list_runs, resolve_run
from deepatlas.db.server import LocalServer
from deepatlas.db.settings import Settings
from deepatlas.errors import GraphError, NotFoundError, UsageError
from deepatlas.workflows.build import ingest
from deepatlas.workspace import Workspace

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
        ingest(Workspace(g, model=tiny_checkpoint, run="crash", limit=400, device="cpu", progress=kill_after_first_batch), edges=EDGES)
    g.close()
    assert victim.pid() is None  # the pid file was stale and is cleared
    victim.start()  # `db start` after a crash recovers the store
    with Graph(_settings(victim), retry_seconds=3) as g2:
        with pytest.raises(NotFoundError):
            resolve_run(g2, "crash")  # readers never see the half-written run
        left = [r.status for r in list_runs(g2, include_incomplete=True) if r.name == "crash"]
        assert left == ["running"]  # the crash left it running: never complete
        report = ingest(Workspace(g2, model=tiny_checkpoint, run="crash", limit=400, device="cpu"), edges=EDGES)
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
        ingest(Workspace(g, model=tiny_checkpoint, run="stopped", limit=300, device="cpu", progress=stop_once), edges=EDGES)
    g.close()
    victim.start()
    after = _counts(victim)
    assert after.get("complete", 0) == before.get("complete", 0)  # nothing new is marked complete
    with Graph(_settings(victim), retry_seconds=3) as g2:
        ingest(Workspace(g2, model=tiny_checkpoint, run="stopped", limit=300, device="cpu"), edges=EDGES)
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
                ingest(Workspace(g, model=tiny_checkpoint, run=name, limit=300, device="cpu", progress=progress), edges=EDGES)
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


def _cli(server: LocalServer, home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NEO4J_URI": server.bolt_uri, "NEO4J_USERNAME": "neo4j", "NEO4J_PASSWORD": server.read_password(),
           "DEEPATLAS_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "deepatlas", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_running(server: LocalServer, name: str, timeout: float = 240.0) -> str:
    import time

    deadline = time.time() + timeout
    with Graph(_settings(server), retry_seconds=3) as g:
        while time.time() < deadline:
            rows = g.read("MATCH (r:Run {name: $n, status: 'running'}) RETURN r.writer AS w", {"n": name})
            if rows:
                return str(rows[0]["w"])
            time.sleep(0.2)
    raise AssertionError(f"run {name} never started writing")


def test_a_run_being_written_by_a_live_process_is_not_purged(victim: LocalServer, tiny_checkpoint: Path) -> None:
    import socket

    live = subprocess.Popen(["sleep", "120"])  # stands for another ingest, alive on this host
    try:
        with Graph(_settings(victim), retry_seconds=3) as g:
            g.write("CREATE (:Run {key: 'owned@live', name: 'owned', status: 'running', created_at: datetime(), "
                    "heartbeat: datetime(), writer: $w})", {"w": f"{socket.gethostname()}:{live.pid}"})
            g.write("CREATE (:Neuron {key: 'owned@live/n/x/0', run: 'owned@live'})")
            with pytest.raises(UsageError, match=rf"run owned is being written by process .*:{live.pid}; wait for it"):
                ingest(Workspace(g, model=tiny_checkpoint, run="owned", limit=100, device="cpu"), edges=EDGES)
            assert g.read("MATCH (n:Neuron {run: 'owned@live'}) RETURN count(n) AS c")[0]["c"] == 1  # untouched
        live.kill()
        live.wait()
        with Graph(_settings(victim), retry_seconds=3) as g:  # its writer is dead: the leftovers go
            ingest(Workspace(g, model=tiny_checkpoint, run="owned", limit=100, device="cpu"), edges=EDGES)
            assert resolve_run(g, "owned").n_samples == 100
            assert g.read("MATCH (n {run: 'owned@live'}) RETURN count(n) AS c")[0]["c"] == 0
    finally:
        live.kill()


def test_sigterm_mid_write_fails_the_run_cleanly(victim: LocalServer, tiny_checkpoint: Path, tmp_path: Path) -> None:
    args = ("ingest", "--model", str(tiny_checkpoint), "--run", "termed", "--device", "cpu", "--edges", "coactivation",
            "--limit", "2000", "--pixel-top-k", "200")
    os.environ["DEEPATLAS_WRITE_BATCH"] = "20"  # many small transactions: the signal lands mid-write
    try:
        proc = _cli(victim, tmp_path, *args)
    finally:
        del os.environ["DEEPATLAS_WRITE_BATCH"]
    writer = _wait_for_running(victim, "termed")
    assert writer.endswith(f":{proc.pid}")
    proc.send_signal(signal.SIGTERM)
    _, errs = proc.communicate(timeout=120)
    assert proc.returncode == 143, errs
    assert [line for line in errs.splitlines() if line.strip()][-1] == "terminated" and "Traceback" not in errs
    with Graph(_settings(victim), retry_seconds=3) as g:
        rows = g.read("MATCH (r:Run {name: 'termed'}) RETURN r.status AS s, r.key AS k, r.error AS e")
        assert [(r["s"], r["e"]) for r in rows] == [("failed", "interrupted")]
        assert g.read("MATCH (n {run: $k}) RETURN count(n) AS c", {"k": rows[0]["k"]})[0]["c"] == 0
    again = _cli(victim, tmp_path, *args)  # the same command afterwards completes
    _, errs = again.communicate(timeout=300)
    assert again.returncode == 0, errs
