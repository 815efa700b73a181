"""The PostgreSQL store's options, pool, numbered migrations and transactions."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import structlog

from bot.store.base import StoreUnavailable

log = structlog.get_logger(__name__)

# Every replica takes this transaction-scoped advisory lock before it migrates, so two
# starting together migrate once; transaction-scoped so it works through PgBouncer.
MIGRATION_LOCK = 0x726F6C6C626F74  # "rollbot"

# What the store reads from its URL's query; everything else in the query is asyncpg's
# own (sslmode, sslrootcert, ...), and anything neither knows is refused at start-up
# rather than sent to the server as a setting.
OWN_KEYS = frozenset(
    {"pool_size", "pool_min_size", "statement_timeout", "connect_timeout", "pgbouncer"}
)
ASYNCPG_KEYS = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcrl",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "sslnegotiation",
        "target_session_attrs",
        "passfile",
        "service",
        "servicefile",
        "krbsrvname",
        "gsslib",
        "host",
        "port",
        "user",
        "password",
        "dbname",
        "database",
        "application_name",
    }
)
TRUE = frozenset({"1", "true", "yes", "on"})

# The database errors that mean "not reachable now" (down, restarting, overloaded, too
# slow), as opposed to a bug: each becomes StoreUnavailable with a message fit for Slack.
UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)


@dataclass(frozen=True)
class PgOptions:
    """How to reach PostgreSQL: asyncpg's DSN plus the store's own settings."""

    dsn: str
    pool_size: int = 10
    pool_min_size: int = 1
    statement_timeout_ms: int = 5000
    connect_timeout: float = 2.0
    # Behind PgBouncer in transaction mode: no prepared-statement cache, no session state.
    pgbouncer: bool = False

    @classmethod
    def from_url(cls, url: str) -> PgOptions:
        """Read `postgresql://user:pass@host:port/db?pool_size=..&statement_timeout=..`."""
        parts = urlsplit(url)
        if parts.scheme not in {"postgresql", "postgres"}:
            raise ValueError(f"not a PostgreSQL URL: scheme {parts.scheme!r}")
        query = parse_qsl(parts.query, keep_blank_values=True)
        unknown = sorted({k for k, _ in query} - OWN_KEYS - ASYNCPG_KEYS)
        if unknown:
            raise ValueError(
                f"ROLLBOT_STORE has unknown options {', '.join(unknown)}; "
                f"rollbot reads {', '.join(sorted(OWN_KEYS))} and asyncpg's sslmode, "
                "sslrootcert, sslcert, sslkey, target_session_attrs and the like"
            )
        own = {k: v for k, v in query if k in OWN_KEYS}
        rest = urlencode([(k, v) for k, v in query if k not in OWN_KEYS])
        try:
            options = cls(
                dsn=urlunsplit(parts._replace(query=rest)),
                pool_size=int(own.get("pool_size", cls.pool_size)),
                pool_min_size=int(own.get("pool_min_size", cls.pool_min_size)),
                statement_timeout_ms=int(own.get("statement_timeout", cls.statement_timeout_ms)),
                connect_timeout=float(own.get("connect_timeout", cls.connect_timeout)),
                pgbouncer=own.get("pgbouncer", "false").lower() in TRUE,
            )
        except ValueError as exc:
            raise ValueError(f"ROLLBOT_STORE has an option that is not a number: {exc}") from None
        if not 1 <= options.pool_min_size <= options.pool_size:
            raise ValueError("ROLLBOT_STORE needs 1 <= pool_min_size <= pool_size")
        if options.statement_timeout_ms < 1 or options.connect_timeout <= 0:
            raise ValueError("ROLLBOT_STORE needs a positive statement_timeout and connect_timeout")
        return options

    @property
    def acquire_timeout(self) -> float:
        """Seconds to wait for a pooled connection when every one is busy."""
        return self.connect_timeout + self.statement_timeout_ms / 1000

    @property
    def where(self) -> str:
        """Name the server and database without credentials, for messages and logs."""
        parts = urlsplit(self.dsn)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"{host}{port}{parts.path or '/'}"


def migrations() -> list[tuple[int, str, str]]:
    """Return the numbered SQL migrations shipped with rollbot: (number, name, script)."""
    found = []
    for entry in resources.files("bot.store").joinpath("pg_migrations").iterdir():
        matched = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if matched:
            found.append((int(matched[1]), matched[2], entry.read_text(encoding="utf-8")))
    numbers = [number for number, _, _ in sorted(found)]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RuntimeError(f"PostgreSQL migrations are not numbered 1..n: {numbers}")
    return sorted(found)


class PgBase:
    """A pool of connections to one PostgreSQL database, shared by every replica."""

    def __init__(self, url: str) -> None:
        self.options = PgOptions.from_url(url)
        self._pool: asyncpg.Pool | None = None
        self._pruned_at: datetime | None = None

    async def open(self) -> None:
        """Connect and migrate the schema; idempotent."""
        if self._pool is not None:
            return
        opts = self.options
        settings = {} if opts.pgbouncer else {"statement_timeout": str(opts.statement_timeout_ms)}
        try:
            pool = await asyncpg.create_pool(
                opts.dsn,
                min_size=opts.pool_min_size,
                max_size=opts.pool_size,
                timeout=opts.connect_timeout,
                # The client gives up shortly after the server would: a network that drops
                # packets must not hang a Slack handler past its 3-second answer.
                command_timeout=opts.statement_timeout_ms / 1000 + 1,
                # PgBouncer in transaction mode may run each transaction on another server
                # connection: no named prepared statements, and startup settings it
                # would refuse go into each transaction instead (SET LOCAL).
                statement_cache_size=0 if opts.pgbouncer else 100,
                server_settings=settings,
            )
        except UNREACHABLE as exc:
            raise self._unavailable(exc) from None
        self._pool = pool
        try:
            await self._migrate()
        except BaseException:
            self._pool = None
            await pool.close()
            raise

    async def close(self) -> None:
        """Close the pool; idempotent."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers now."""
        async with self._transaction() as conn:
            await conn.fetchval("SELECT 1")

    async def _migrate(self) -> None:
        """Apply the migrations this database lacks, once, whoever starts first."""
        known = migrations()
        async with self._transaction() as conn:
            await conn.execute("SET LOCAL statement_timeout = 0")
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS rollbot_migrations ("
                "version integer PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {
                r["version"] for r in await conn.fetch("SELECT version FROM rollbot_migrations")
            }
            if done and max(done) > len(known):
                # Fail closed: an older rollbot must not write to a schema it does not know.
                raise RuntimeError(
                    f"the database {self.options.where} has schema version {max(done)}, "
                    f"newer than this rollbot knows ({len(known)}): upgrade rollbot"
                )
            for number, name, script in known:
                if number in done:
                    continue
                await conn.execute(script)
                await conn.execute(
                    "INSERT INTO rollbot_migrations (version, name) VALUES ($1, $2)", number, name
                )
                log.info("store migrated", version=number, name=name)

    @asynccontextmanager
    async def _transaction(self, *, readonly: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """Run a block in one READ COMMITTED transaction on a pooled connection.

        A connection found dead when the transaction starts (the server restarted since)
        is replaced once; any other loss of the database is StoreUnavailable, and the
        transaction is rolled back, so nothing is half-applied.
        """
        if self._pool is None:
            raise RuntimeError("PostgresStore is not open: await store.open() first")
        pool = self._pool
        conn, transaction = await self._begin(pool, readonly)
        try:
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(*UNREACHABLE, asyncpg.InterfaceError):
                    await asyncio.shield(transaction.rollback())
                raise
            await transaction.commit()
        except UNREACHABLE as exc:
            raise self._unavailable(exc) from None
        finally:
            await pool.release(conn)

    async def _begin(
        self, pool: asyncpg.Pool, readonly: bool
    ) -> tuple[asyncpg.Connection, asyncpg.transaction.Transaction]:
        """Acquire a connection and start a transaction on it, retrying a stale one once."""
        for attempt in (1, 2):
            try:
                # Waiting for a busy pool is not an outage: it gets as long as a statement
                # may take (a down database fails faster, at connect_timeout).
                conn = await pool.acquire(timeout=self.options.acquire_timeout)
            except UNREACHABLE as exc:
                raise self._unavailable(exc) from None
            try:
                transaction = conn.transaction(readonly=readonly)
                await transaction.start()
                if self.options.pgbouncer:
                    # Not a startup parameter (PgBouncer refuses those it does not know).
                    await conn.execute(
                        f"SET LOCAL statement_timeout = {self.options.statement_timeout_ms}"
                    )
            except UNREACHABLE as exc:
                await pool.release(conn)
                if attempt == 2:
                    raise self._unavailable(exc) from None
                continue
            return conn, transaction
        raise AssertionError("unreachable")

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        """Describe a lost database without its credentials."""
        why = type(exc).__name__
        if isinstance(exc, asyncpg.PostgresError):
            # The server's own words ("unsupported startup parameter: ..."); they never
            # carry the password, which only the client knows.
            why += f": {str(exc)[:200]}"
        log.warning("store unreachable", where=self.options.where, error=why)
        return StoreUnavailable(
            f"rollbot cannot reach its database ({self.options.where}: {why}). "
            "Nothing was changed; try again in a moment."
        )
