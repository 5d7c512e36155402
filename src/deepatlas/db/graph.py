""":class:`Graph`: one driver, read/write helpers, batched UNWIND writes, error mapping.

Every driver error leaves this module as a :class:`~deepatlas.errors.GraphError` whose message
says what to do; the password never appears in it. Reads run in read transactions (the
server refuses a write smuggled into one); writes run as managed transactions, which the
driver retries on transient errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from neo4j import Driver, GraphDatabase, ManagedTransaction
from neo4j.exceptions import (
    AuthError,
    ClientError,
    ConfigurationError,
    DatabaseError,
    DriverError,
    Neo4jError,
    ServiceUnavailable,
    SessionExpired,
    TransientError,
)

from deepatlas.db.settings import Settings, resolve_settings
from deepatlas.errors import GraphError, GraphUnavailable

__all__ = ["Graph"]

Row = dict[str, Any]


class Graph:
    """A connection to Neo4j.

    Parameters
    ----------
    settings : Settings, optional
        Default :func:`resolve_settings` (NEO4J_* variables, else the managed local server).
    autostart : bool, default True
        Start the managed local server if it is not running (never for an external URI).
    retry_seconds : float, default 30
        How long managed transactions retry transient errors and lost connections (a server
        restart) before the error is raised.

    Examples
    --------
    Against a running server::

        with Graph() as g:
            g.read("RETURN 1 AS one")    # [{'one': 1}]
    """

    def __init__(self, settings: Settings | None = None, *, autostart: bool = True, retry_seconds: float = 30.0) -> None:
        if settings is None:
            if autostart:
                _ensure_local_server()
            settings = resolve_settings()
        self.settings = settings
        try:
            self._driver: Driver = GraphDatabase.driver(
                settings.uri, auth=(settings.user, settings.password), max_transaction_retry_time=retry_seconds,
                notifications_min_severity="OFF",  # "property does not exist" before an analysis ran is expected
            )
            self._driver.verify_connectivity()
        except Exception as exc:
            raise _translate(exc, settings) from None

    def __enter__(self) -> Graph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._driver.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except GraphError:
            raise
        except (Neo4jError, DriverError, OSError) as exc:
            raise _translate(exc, self.settings) from None

    # -- reads ---------------------------------------------------------------------------
    def read(self, query: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Run ``query`` in a read transaction; return the records as dicts."""

        def work(tx: ManagedTransaction) -> list[Row]:
            return [record.data() for record in tx.run(query, params or {})]

        with self._errors(), self._driver.session(database=self.settings.database) as session:
            return session.execute_read(work)

    def profile(self, query: str, params: dict[str, Any] | None = None) -> list[str]:
        """Run ``PROFILE query`` (read transaction) and return its plan as indented lines:
        operator, rows, db hits, and details (the index used, if any)."""

        def work(tx: ManagedTransaction) -> Any:
            return tx.run("PROFILE " + _strip_comments(query), params or {}).consume().profile

        with self._errors(), self._driver.session(database=self.settings.database) as session:
            plan = session.execute_read(work)
        lines: list[str] = []

        def walk(node: dict[str, Any], depth: int) -> None:
            args = node.get("args", {})
            lines.append(f"{'  ' * depth}{node.get('operatorType', '?')}  rows={node.get('rows', '?')} "
                         f"dbHits={node.get('dbHits', '?')}  {args.get('Details', '')}".rstrip())
            for child in node.get("children", []):
                walk(child, depth + 1)

        walk(plan or {}, 0)
        return lines

    # -- writes --------------------------------------------------------------------------
    def write(self, query: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Run ``query`` in one managed write transaction (retried on transient errors)."""

        def work(tx: ManagedTransaction) -> list[Row]:
            return [record.data() for record in tx.run(query, params or {})]

        with self._errors(), self._driver.session(database=self.settings.database) as session:
            return session.execute_write(work)

    def write_many(self, statements: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Run several statements in ONE managed write transaction: all or nothing."""

        def work(tx: ManagedTransaction) -> None:
            for query, params in statements:
                tx.run(query, params).consume()

        with self._errors(), self._driver.session(database=self.settings.database) as session:
            session.execute_write(work)

    def write_batches(
        self,
        query: str,
        rows: Sequence[Row],
        *,
        batch_size: int = 10_000,
        params: dict[str, Any] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Run ``query`` (which must ``UNWIND $rows AS row``) over ``rows`` in batches.

        Each batch is one managed transaction. Returns the number of rows written.
        """
        written = 0
        with self._errors(), self._driver.session(database=self.settings.database) as session:
            for start in range(0, len(rows), batch_size):
                chunk = list(rows[start : start + batch_size])
                session.execute_write(_run_discard, query, {**(params or {}), "rows": chunk})
                written += len(chunk)
                if progress is not None:
                    progress(len(chunk))
        return written

    def write_until_done(self, query: str, params: dict[str, Any] | None = None, *, limit: int = 10_000) -> int:
        """Repeat a write that handles at most ``$limit`` items and returns ``count``, until 0.

        For deleting large sets without one huge transaction.
        """
        total = 0
        while True:
            rows = self.write(query, {**(params or {}), "limit": limit})
            done = int(rows[0]["count"]) if rows else 0
            total += done
            if done == 0:
                return total


def _strip_comments(query: str) -> str:
    return "\n".join(line for line in query.splitlines() if not line.lstrip().startswith("//"))


def _run_discard(tx: ManagedTransaction, query: str, params: dict[str, Any]) -> None:
    tx.run(query, params).consume()


def _ensure_local_server() -> None:
    import os

    if os.environ.get("NEO4J_URI"):
        return
    from deepatlas.db.server import LocalServer

    server = LocalServer()
    if server.pid() is None:
        server.start()


def _translate(exc: BaseException, settings: Settings) -> GraphError:
    """One clear, secret-free line for a driver error."""
    where = settings.uri
    if isinstance(exc, AuthError):
        hint = "check NEO4J_USERNAME / NEO4J_PASSWORD" if not settings.managed else "the password file does not match the server; see `deepatlas db status`"
        return GraphError(f"Neo4j at {where} refused the credentials of user {settings.user!r}: {hint}")
    if isinstance(exc, (ServiceUnavailable, SessionExpired, OSError)):
        hint = "start it with `deepatlas db start`" if settings.managed else "check NEO4J_URI and that the server is up"
        return GraphUnavailable(f"cannot reach Neo4j at {where}: {hint}")
    if isinstance(exc, ConfigurationError):
        return GraphError(f"bad Neo4j connection settings for {where}: {exc}")
    if isinstance(exc, ClientError):
        code = exc.code or ""
        if "AccessMode" in code or "ForbiddenDueToTransactionType" in code:
            return GraphError("this query writes, but it ran in a read-only transaction; the server refused it")
        return GraphError(f"Neo4j refused the query ({code}): {_first_line(exc.message)}")
    if isinstance(exc, (TransientError, DatabaseError)):
        text = f"{exc.code} {exc.message}"
        if any(k in text for k in ("No space left", "TransactionLogError", "DiskFull", "disk full")):
            return GraphError(f"Neo4j cannot write: its disk is full or its transaction log broke ({exc.code}); free space, "
                              "then `deepatlas db stop` and `deepatlas db start`, and check `deepatlas db status`")
        if "MemoryPoolOutOfMemoryError" in text:
            return GraphError(f"one write transaction needed more memory than Neo4j allows ({exc.code}, "
                              "dbms.memory.transaction.total.max); lower DEEPATLAS_WRITE_BATCH or raise that setting")
        if "DatabaseUnavailable" in text:
            return GraphUnavailable(f"the database at {where} is not online ({exc.code}); see `deepatlas db status` and its log")
        return GraphError(f"Neo4j failed ({exc.code}): {_first_line(exc.message)}; `deepatlas db status` shows whether "
                          "the database is online, and the server log says why")
    return GraphError(f"Neo4j error: {_first_line(str(exc))}")


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "no detail"
