"""The managed local Neo4j: the real 5.26 LTS Community server, assembled from Maven Central.

Install: ``mvn dependency:copy-dependencies`` on the shipped ``neo4j-pom.xml`` (org.neo4j:neo4j
plus org.neo4j.client:neo4j-browser) into ``$DEEPATLAS_CACHE/neo4j-<version>/lib``, once; a
``.complete`` stamp marks a finished download so an interrupted one is redone.

Run: ``java -cp lib/* org.neo4j.server.CommunityEntryPoint --home-dir H --config-dir H/conf
--console-mode`` in a new process session, with H = ``$DEEPATLAS_HOME/neo4j``. It listens on
127.0.0.1 only, authentication on; the password is generated on the first start, set with
``neo4j-admin dbms set-initial-password`` (``org.neo4j.cli.AdminTool``) before the database
first starts, and kept in ``H/password`` with mode 0600.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from deepatlas.db.templates import cypher
from deepatlas.errors import ServerError
from deepatlas.paths import cache_dir, home_dir

__all__ = ["NEO4J_VERSION", "LocalServer", "ServerStatus"]

NEO4J_VERSION = "5.26.30"
_ENTRY = "org.neo4j.server.CommunityEntryPoint"
_ADMIN = "org.neo4j.cli.AdminTool"


@dataclass(frozen=True)
class ServerStatus:
    """What ``deepatlas db status`` reports. Holds no secret."""

    running: bool
    pid: int | None
    version: str | None
    bolt_uri: str
    http_uri: str
    browser_url: str
    home: str
    password_file: str
    log_file: str
    jars_installed: bool
    database: str | None = None  # the neo4j database's state ("online", "offline", ...), None if unknown
    free_mb: float | None = None  # free space on the disk that holds the store


#: Below this many MB free on the store's disk an ingest stops before writing
#: (``$DEEPATLAS_MIN_FREE_MB``): a full disk corrupts the transaction log.
MIN_FREE_MB = 512.0


def min_free_mb() -> float:
    text = os.environ.get("DEEPATLAS_MIN_FREE_MB", "").strip()
    if not text:
        return MIN_FREE_MB
    try:
        value = float(text)
    except ValueError:
        raise ServerError(f"DEEPATLAS_MIN_FREE_MB must be a number of MB, got {text[:30]!r}") from None
    if value < 0:
        raise ServerError(f"DEEPATLAS_MIN_FREE_MB must not be negative, got {text[:30]!r}")
    return value


class LocalServer:
    """Start, stop and inspect the managed local Neo4j.

    Parameters
    ----------
    home : path, optional
        Server home (conf, data, logs, run, password); default ``$DEEPATLAS_HOME/neo4j``.
    bolt_port, http_port : int, optional
        Default ``$DEEPATLAS_BOLT_PORT`` / ``$DEEPATLAS_HTTP_PORT``, else 7687 / 7474.
    heap : str, optional
        JVM heap, default ``$DEEPATLAS_NEO4J_HEAP`` or ``1g``.
    settings : dict of str to str, optional
        Further neo4j.conf lines (e.g. ``{"db.memory.transaction.max": "16m"}``), written last.
    """

    def __init__(
        self,
        home: str | Path | None = None,
        *,
        bolt_port: int | None = None,
        http_port: int | None = None,
        heap: str | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.home = Path(home) if home is not None else home_dir() / "neo4j"
        self.bolt_port = bolt_port or _env_port("DEEPATLAS_BOLT_PORT", 7687)
        self.http_port = http_port or _env_port("DEEPATLAS_HTTP_PORT", 7474)
        self.heap = heap or os.environ.get("DEEPATLAS_NEO4J_HEAP", "1g")
        self.settings = dict(settings or {})
        self.lib = cache_dir() / f"neo4j-{NEO4J_VERSION}" / "lib"

    # -- paths ---------------------------------------------------------------------------
    @property
    def bolt_uri(self) -> str:
        return f"bolt://127.0.0.1:{self.bolt_port}"

    @property
    def http_uri(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def browser_url(self) -> str:
        return f"{self.http_uri}/browser/?dbms={self.bolt_uri}"

    @property
    def password_file(self) -> Path:
        return self.home / "password"

    @property
    def pid_file(self) -> Path:
        return self.home / "run" / "deepatlas-neo4j.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / "console.log"

    # -- install -------------------------------------------------------------------------
    def jars_installed(self) -> bool:
        return (self.lib.parent / ".complete").is_file()

    def install(self) -> Path:
        """Resolve the server's jars from Maven Central once; return the lib directory.

        Raises
        ------
        ServerError
            Java or Maven missing, or the download failed (the message quotes Maven's error).
        """
        if self.jars_installed():
            return self.lib
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServerError("Maven (mvn) is needed once to fetch the Neo4j jars: apt-get install maven")
        _require_java()
        root = self.lib.parent
        root.mkdir(parents=True, exist_ok=True)
        pom = root / "pom.xml"
        pom.write_text(resources.files("deepatlas.db").joinpath("neo4j-pom.xml").read_text())
        staging = root / "lib.partial"
        shutil.rmtree(staging, ignore_errors=True)
        proc = subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
            raise ServerError(f"Maven could not fetch the Neo4j {NEO4J_VERSION} jars:\n{tail}")
        shutil.rmtree(self.lib, ignore_errors=True)
        staging.rename(self.lib)
        (root / ".complete").write_text(NEO4J_VERSION + "\n")
        return self.lib

    # -- password ------------------------------------------------------------------------
    def read_password(self) -> str:
        """The generated password. Raises ServerError before the first start."""
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            raise ServerError(
                f"no password yet at {self.password_file}: run `deepatlas db start` first"
            ) from None

    def _ensure_password(self, env: dict[str, str]) -> None:
        """Generate and set the initial password if the database was never started."""
        if self.password_file.exists() and (self.home / "data" / "dbms").exists():
            return
        if (self.home / "data" / "dbms").exists():
            raise ServerError(
                f"the database under {self.home / 'data'} exists but its password file is gone; "
                f"remove {self.home} to start afresh (its data will be lost)"
            )
        password = secrets.token_urlsafe(24)
        proc = subprocess.run(
            [_java(), "-cp", f"{self.lib}/*", _ADMIN, "dbms", "set-initial-password", password],
            env=env, capture_output=True, text=True, check=False, umask=0o077,
        )
        if proc.returncode != 0:
            raise ServerError(f"neo4j-admin could not set the initial password: {proc.stderr.strip()[-300:]}")
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        os.chmod(self.password_file, 0o600)

    # -- lifecycle -----------------------------------------------------------------------
    def _write_conf(self) -> None:
        """The home and its folders are the owner's alone (0700): the store, the logs and the
        password hash (data/dbms/auth.ini) are readable by nobody else; the server and the admin
        tool run with umask 077 so what they create is 0600/0700 too."""
        conf = self.home / "conf"
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.home, 0o700)
        conf.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in ("data", "logs", "run", "plugins", "import"):
            (self.home / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.home / sub, 0o700)
        _private_tree(self.home)
        heap = self.heap
        (conf / "neo4j.conf").write_text(
            "# Written by deepatlas on every start; edit deepatlas/db/server.py, not this file.\n"
            "server.default_listen_address=127.0.0.1\n"
            "server.default_advertised_address=127.0.0.1\n"
            f"server.bolt.listen_address=127.0.0.1:{self.bolt_port}\n"
            f"server.bolt.advertised_address=127.0.0.1:{self.bolt_port}\n"
            f"server.http.listen_address=127.0.0.1:{self.http_port}\n"
            f"server.http.advertised_address=127.0.0.1:{self.http_port}\n"
            "server.https.enabled=false\n"
            "dbms.security.auth_enabled=true\n"
            "dbms.usage_report.enabled=false\n"
            f"server.memory.heap.initial_size={heap}\n"
            f"server.memory.heap.max_size={heap}\n"
            f"server.memory.pagecache.size={os.environ.get('DEEPATLAS_NEO4J_PAGECACHE', '512m')}\n"
            "db.tx_log.rotation.retention_policy=2 files\n"
            + "".join(f"{k}={v}\n" for k, v in self.settings.items())
        )

    def _env(self) -> dict[str, str]:
        return {**os.environ, "NEO4J_HOME": str(self.home), "NEO4J_CONF": str(self.home / "conf")}

    def pid(self) -> int | None:
        """The server's pid if it runs; a stale pid file is removed."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if _is_our_server(pid, self.home):
            return pid
        self.pid_file.unlink(missing_ok=True)  # stale: the process is gone or is another program
        return None

    def start(self, timeout: float = 180.0) -> ServerStatus:
        """Start the server (idempotent) and wait until Bolt answers.

        Raises
        ------
        ServerError
            A port is taken by another program, Java is missing, the jars cannot be fetched,
            or the server did not answer within ``timeout`` seconds (the message ends with
            the last lines of its log).
        """
        if self.pid() is not None:
            deadline = time.monotonic() + timeout
            self._wait_for_bolt(timeout, None)
            self._wait_for_database(deadline)
            return self.status()
        for port, name, var in ((self.bolt_port, "Bolt", "DEEPATLAS_BOLT_PORT"), (self.http_port, "HTTP", "DEEPATLAS_HTTP_PORT")):
            if _port_in_use(port):
                raise ServerError(
                    f"port {port} ({name}) is already in use by another program; stop it, or choose "
                    f"another port with {var}=..., or point deepatlas at that server with NEO4J_URI"
                )
        self.install()
        self._write_conf()
        env = self._env()
        self._ensure_password(env)
        log = os.fdopen(os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        try:
            proc = subprocess.Popen(
                [_java(), f"-Xmx{self.heap}", "-XX:+UseG1GC", "-cp", f"{self.lib}/*", _ENTRY,
                 f"--home-dir={self.home}", f"--config-dir={self.home / 'conf'}", "--console-mode"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True, cwd=self.home, umask=0o077,
            )
        finally:
            log.close()
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        try:
            self._wait_for_bolt(timeout, proc)
            self._wait_for_database(deadline)
        except ServerError:
            self.stop()
            raise
        return self.status()

    def _wait_for_bolt(self, timeout: float, proc: subprocess.Popen[bytes] | None) -> None:
        from neo4j import GraphDatabase
        from neo4j.exceptions import AuthError, Neo4jError, ServiceUnavailable

        deadline = time.monotonic() + timeout
        password = self.read_password()
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise ServerError(f"Neo4j exited with code {proc.returncode} while starting:\n{self.log_tail()}")
            if _port_in_use(self.bolt_port):
                try:
                    with GraphDatabase.driver(self.bolt_uri, auth=("neo4j", password)) as driver:
                        driver.verify_connectivity()
                        return
                except AuthError as exc:
                    raise ServerError(f"the local server rejected the stored password ({self.password_file})") from exc
                except (ServiceUnavailable, Neo4jError, OSError):
                    pass
            time.sleep(0.5)
        raise ServerError(f"Neo4j did not answer on {self.bolt_uri} within {timeout:.0f} s:\n{self.log_tail()}")

    def _wait_for_database(self, deadline: float) -> None:
        """Bolt answering is not enough: the default database must come online (a store broken
        by a full disk leaves the server up and the database offline)."""
        state = None
        while True:
            _, state = self._version()
            if state == "online" or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        if state != "online":
            free = self.free_mb()
            disk = f" The disk has {free:,.0f} MB free." if free is not None else ""
            raise ServerError(f"Neo4j answers but its database is {state or 'not answering'}.{disk} If the disk filled, free "
                              f"space and run `deepatlas db start` again; the server log ({self.log_file}) says why:\n"
                              f"{self.log_tail()}")

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop the server cleanly (SIGTERM, then SIGKILL after ``timeout``). True if it ran."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> ServerStatus:
        pid = self.pid()
        version = database = None
        if pid is not None:
            version, database = self._version()
        return ServerStatus(
            running=pid is not None,
            pid=pid,
            version=version,
            bolt_uri=self.bolt_uri,
            http_uri=self.http_uri,
            browser_url=self.browser_url,
            home=str(self.home),
            password_file=str(self.password_file),
            log_file=str(self.log_file),
            jars_installed=self.jars_installed(),
            database=database,
            free_mb=self.free_mb(),
        )

    def free_mb(self) -> float | None:
        """Free space (MB) on the disk that holds the store, None if the home does not exist."""
        try:
            return shutil.disk_usage(self.home).free / 2**20
        except OSError:
            return None

    def _version(self) -> tuple[str | None, str | None]:
        """(Neo4j version, the default database's state) or None for what could not be read."""
        from neo4j import GraphDatabase
        from neo4j.exceptions import Neo4jError, ServiceUnavailable

        try:
            with GraphDatabase.driver(self.bolt_uri, auth=("neo4j", self.read_password())) as driver:
                records, _, _ = driver.execute_query(cypher("server_version"))
                version = str(records[0]["v"])
                rows, _, _ = driver.execute_query(cypher("database_status"), database_="system")
                return version, (str(rows[0]["currentStatus"]) if rows else None)
        except (ServiceUnavailable, Neo4jError, ServerError, OSError):
            return None, None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log yet)"
        return "\n".join(text[-lines:])


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServerError("Java 17 is needed to run Neo4j: apt-get install openjdk-17-jre-headless")
    return java


def _require_java() -> None:
    _java()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def _is_our_server(pid: int, home: Path) -> bool:
    if not _alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True  # no /proc: trust the pid file
    return _ENTRY in cmdline and f"--home-dir={home}" in cmdline


def _private_tree(root: Path) -> None:
    """Folders 0700 and files 0600 under ``root`` (what an older version left world-readable)."""
    for path in root.rglob("*"):
        try:
            if path.is_symlink():
                continue
            os.chmod(path, 0o700 if path.is_dir() else 0o600)
        except OSError:
            pass


def _env_port(var: str, default: int) -> int:
    text = os.environ.get(var, "").strip()
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ServerError(f"{var} must be a port number from 1 to 65535, got {text[:30]!r}")
    return int(text)


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
