"""A long ingest survives a kill (--resume), and more processes through torchrun store what one
process stores: both through the CLI, in real subprocesses, against the real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deepatlas.db.graph import Graph
from deepatlas.db.runs import resolve_run

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "deepatlas"]


def _ingest_args(ckpt: Path, run: str, *extra: str) -> list[str]:
    return [*CLI, "ingest", "--model", str(ckpt), "--limit", "3000", "--run", run, "--device", "cpu",
            "--attribution-per-class", "20", "--between-samples", "20", "--json", *extra]


def _edges(g: Graph, run: str) -> dict[tuple[str, str, str], float]:
    """Every stored edge of a run, keyed by type and by its endpoints' keys without the run prefix."""
    key = resolve_run(g, run).key
    rows = g.read("MATCH (a {run: $k})-[e]->(b {run: $k}) RETURN type(e) AS t, a.key AS a, b.key AS b, "
                  "coalesce(e.r, e.score, e.pg, toFloat(e.count)) AS v", {"k": key})
    cut = len(key) + 1
    return {(r["t"], r["a"][cut:], r["b"][cut:]): float(r["v"]) for r in rows if r["v"] is not None}


def _nodes(g: Graph, run: str) -> dict[str, tuple[float, float]]:
    key = resolve_run(g, run).key
    rows = g.read("MATCH (n:Neuron {run: $k}) RETURN n.key AS k, n.mean AS m, n.std AS s", {"k": key})
    return {r["k"][len(key) + 1 :]: (r["m"], r["s"]) for r in rows}


def _same(a: dict[tuple[str, str, str], float], b: dict[tuple[str, str, str], float], tol: float) -> None:
    assert a.keys() == b.keys(), (len(a), len(b), sorted(set(a) ^ set(b))[:5])
    diff = max(abs(a[k] - b[k]) for k in a)
    assert diff <= tol, diff


def test_a_killed_ingest_resumes_and_stores_what_an_uninterrupted_one_does(neo4j_server, tiny_checkpoint: Path) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "DEEPATLAS_CHECKPOINT_SECONDS": "0"}  # save after every batch: a kill loses nothing
    resume_dir = Path(os.environ["DEEPATLAS_HOME"]) / "resume" / "killed"
    proc = subprocess.Popen(_ingest_args(tiny_checkpoint, "killed", "--batch-size", "20"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    done = 0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:  # kill -9 in the middle of the first pass
        try:
            done = json.loads((resume_dir / "meta.json").read_text()).get("images_done") or 0
        except (OSError, ValueError):
            done = 0
        if 600 <= done < 2400:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"not killed mid-pass (images done {done}): {proc.stderr.read() if proc.stderr else ''}"
    listed = subprocess.run([*CLI, "runs", "list", "--all", "--json"], env=env, capture_output=True, text=True, check=True)
    partial = [r for r in json.loads(listed.stdout) if r.get("status") == "resumable"]
    assert [r["name"] for r in partial] == ["killed"] and 0 < partial[0]["images_done"] < 3000
    refused = subprocess.run(_ingest_args(tiny_checkpoint, "killed", "--batch-size", "20"), env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "--resume" in refused.stderr  # hours of work are not thrown away silently
    resumed = subprocess.run(_ingest_args(tiny_checkpoint, "killed", "--batch-size", "50", "--resume"), env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed"] is True
    assert not resume_dir.exists()  # the checkpoints go once the run is complete
    whole = subprocess.run(_ingest_args(tiny_checkpoint, "whole"), capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    with Graph(autostart=False) as g:
        assert resolve_run(g, "killed").n_samples == resolve_run(g, "whole").n_samples == 3000
        _same(_edges(g, "killed"), _edges(g, "whole"), 1.5e-6)  # stored r are rounded to 6 decimals
        a, b = _nodes(g, "killed"), _nodes(g, "whole")
        assert a.keys() == b.keys() and max(abs(a[k][0] - b[k][0]) + abs(a[k][1] - b[k][1]) for k in a) < 1e-6


def test_two_processes_under_torchrun_store_what_one_stores(neo4j_server, tiny_checkpoint: Path) -> None:  # type: ignore[no-untyped-def]
    one = subprocess.run(_ingest_args(tiny_checkpoint, "one-process"), capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(_ingest_args(tiny_checkpoint, "two-processes", "--nproc", "2"), capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    report = json.loads(two.stdout)  # only rank 0 prints
    assert report["processes"] == 2
    with Graph(autostart=False) as g:
        assert resolve_run(g, "two-processes").n_samples == 3000  # every image once
        e1, e2 = _edges(g, "one-process"), _edges(g, "two-processes")
        _same(e1, e2, 1.5e-6)
        counts = [v for (t, _, _), v in e2.items() if t == "CONFUSED_WITH"]
        assert counts and all(float(c).is_integer() for c in counts)
        a, b = _nodes(g, "one-process"), _nodes(g, "two-processes")
        assert np.allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], atol=1e-6)
