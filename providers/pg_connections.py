"""Connections to the database: server-side timeouts, one schema, errors without the password."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import asyncpg

from providers.base import AuthRejected, NotFound, ProviderError, TimedOut, Transient
from providers.pg_backups import MAX_ERROR_TEXT
from providers.pg_urls import Target

if TYPE_CHECKING:
    from providers.postgres_migrations import PostgresMigrationsSettings

# What a statement or a connection can fail with, from the server, the driver or the network.
DATABASE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@contextlib.asynccontextmanager
async def connect(
    target: Target, settings: PostgresMigrationsSettings
) -> AsyncIterator[asyncpg.Connection]:
    """Open one connection with server-side timeouts; errors become provider errors."""
    try:
        conn = await asyncpg.connect(
            target.dsn,
            timeout=settings.connect_timeout_seconds,
            command_timeout=settings.statement_timeout_seconds + 5,
            # Timeouts and the schema go into each transaction (set_limits): poolers
            # refuse them as startup settings. application_name they pass on.
            server_settings={"application_name": "rollbot"},
            # A transaction-mode pooler may run each statement on another server
            # connection, where a named prepared statement does not exist.
            statement_cache_size=0 if target.pooled else 100,
        )
    except DATABASE_ERRORS as exc:
        raise _connect_error(exc, target) from exc
    try:
        yield conn
    finally:
        try:
            await asyncio.wait_for(conn.close(), settings.connect_timeout_seconds)
        except DATABASE_ERRORS:
            conn.terminate()


async def set_limits(
    conn: asyncpg.Connection, target: Target, settings: PostgresMigrationsSettings
) -> None:
    """Set this transaction's timeouts and schema (SET LOCAL: nothing outlives it)."""
    await conn.execute(
        "SELECT set_config('statement_timeout', $1, true), "
        "set_config('lock_timeout', $2, true), set_config('search_path', $3, true)",
        f"{int(settings.statement_timeout_seconds * 1000)}ms",
        f"{int(settings.lock_timeout_seconds * 1000)}ms",
        _quote_ident(target.schema),
    )


def error_text(exc: BaseException, target: Target) -> str:
    """Return the database's words for an error, without the password."""
    if isinstance(exc, asyncpg.PostgresError):
        detail = getattr(exc, "detail", None)
        text = f"{exc.sqlstate}: {exc}" + (f" ({detail})" if detail else "")
    elif isinstance(exc, TimeoutError):
        text = "no answer before the timeout"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return target.redact(text)[:MAX_ERROR_TEXT]


async def rollback_quietly(conn: asyncpg.Connection) -> None:
    """Roll back; if the connection is gone, the server has rolled back already."""
    with contextlib.suppress(*DATABASE_ERRORS):
        await conn.execute("ROLLBACK")


def _quote_ident(name: str) -> str:
    """Quote an identifier as PostgreSQL does (a search path of one schema)."""
    return '"' + name.replace('"', '""') + '"'


def _connect_error(exc: BaseException, target: Target) -> ProviderError:
    what = f"Connecting to database {target.database}"
    text = error_text(exc, target)
    if isinstance(
        exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError
    ):
        return AuthRejected(f"{what}: the database refused the credentials ({text})")
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return NotFound(f"{what} failed: {text}")
    if isinstance(exc, TimeoutError):
        return TimedOut(f"{what} failed: {text}")
    return Transient(f"{what} failed: {text}")
