"""The managed server: lifecycle, exposure, secrets."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepatlas.cli.app import app
from deepatlas.db.server import LocalServer
from deepatlas.errors import ServerError

from .conftest import free_port

pytestmark = pytest.mark.e2e


def _listening_addresses(pid: int) -> set[str]:
    """Local addresses of the LISTEN sockets of a process, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:  # 0A = LISTEN
                found.add(parts[1].split(":")[0])
    return found


def test_status_reports_version_uris_and_password_file(neo4j_server: LocalServer) -> None:
    st = neo4j_server.status()
    assert st.running and st.version is not None and st.version.startswith("5.26")
    assert st.bolt_uri == f"bolt://127.0.0.1:{neo4j_server.bolt_port}"
    mode = stat.S_IMODE(os.stat(st.password_file).st_mode)
    assert mode == 0o600
    password = neo4j_server.read_password()
    assert len(password) >= 24
    assert password not in neo4j_server.log_file.read_text()
    for log in (Path(st.home) / "logs").iterdir():
        assert password not in log.read_text(errors="replace")


def test_listens_on_loopback_only(neo4j_server: LocalServer) -> None:
    pid = neo4j_server.pid()
    assert pid is not None
    addrs = _listening_addresses(pid)
    assert addrs, "the server listens on no socket?"
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1 in IPv4 and IPv4-mapped IPv6
    assert addrs <= loopback, addrs


def test_http_and_browser_answer_and_auth_is_on(neo4j_server: LocalServer) -> None:
    import json
    import urllib.error
    import urllib.request

    with urllib.request.urlopen(neo4j_server.http_uri + "/browser/", timeout=10) as resp:
        assert resp.status == 200
    req = urllib.request.Request(
        neo4j_server.http_uri + "/db/neo4j/tx/commit", method="POST",
        data=json.dumps({"statements": [{"statement": "RETURN 1"}]}).encode(), headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 401


def test_start_is_idempotent(neo4j_server: LocalServer) -> None:
    pid = neo4j_server.pid()
    assert neo4j_server.start().pid == pid


def test_port_taken_by_another_program(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = LocalServer(tmp_path / "neo4j", bolt_port=port, http_port=free_port())
        with pytest.raises(ServerError, match=f"port {port} .*already in use"):
            server.start()
    assert server.pid() is None


def test_stale_pid_file_is_cleared(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "neo4j", bolt_port=free_port(), http_port=free_port())
    proc = subprocess.Popen(["true"])
    proc.wait()
    server.pid_file.parent.mkdir(parents=True)
    server.pid_file.write_text(f"{proc.pid}\n")
    assert server.pid() is None and not server.pid_file.exists()
    assert server.stop() is False


def test_cli_start_status_stop_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEO4J_URI", raising=False)
    monkeypatch.setenv("DEEPATLAS_HOME", str(tmp_path))
    monkeypatch.setenv("DEEPATLAS_BOLT_PORT", str(free_port()))
    monkeypatch.setenv("DEEPATLAS_HTTP_PORT", str(free_port()))
    runner = CliRunner()
    for _ in range(2):
        r = runner.invoke(app, ["db", "start", "--json"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["db", "status", "--json"])
        assert r.exit_code == 0 and '"running": true' in r.output and '"version": "5.26' in r.output
        assert (tmp_path / "neo4j" / "password").read_text().strip() not in r.output
        r = runner.invoke(app, ["db", "stop"])
        assert r.exit_code == 0 and "stopped" in r.output
        assert '"running": false' in runner.invoke(app, ["db", "status", "--json"]).output
