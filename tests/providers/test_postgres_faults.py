"""postgres_migrations' fault matrix: each way the database fails, at each step of a rollback.

A database has no HTTP status, so its faults are the ones PostgreSQL shows: credentials
refused, database missing, Prisma's lock held by a deploy, a statement timeout, and the
connection cut (before the rollback reads, and in the middle of the down.sql
transaction). Rate limits, proxy error pages and 5xx do not exist on this path. Each case
checks the message names the cause, the database is exactly as before, and the state
given is the truth.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from providers.base import ProviderError
from providers.postgres_migrations import PRISMA_LOCK, PostgresMigrationsProvider
from tests.support.faults import Fault, assert_names_cause
from tests.support.migrations import ADD_POSTS, INIT, PrismaProject, ProviderFactory
from tests.support.progress import Recorder
from tests.support.proxy import TcpProxy

SLOW_DOWN = "SELECT pg_sleep(3);\nDROP TABLE posts;"


def through(dsn: str, port: int, *, user: str | None = None, database: str | None = None) -> str:
    """Return `dsn` reaching the server on `port`, optionally as another user or database."""
    parts = urlsplit(dsn)
    netloc = f"{user or parts.username}@127.0.0.1:{port}"
    path = f"/{database}" if database else parts.path
    return urlunsplit((parts.scheme, netloc, path, parts.query, ""))


Cleanup = Callable[[], Awaitable[Any]]
Case = Callable[
    [PrismaProject, ProviderFactory], Awaitable[tuple[PostgresMigrationsProvider, Cleanup]]
]


async def nothing() -> None:
    """No cleanup needed."""


async def unknown_role(
    project: PrismaProject, make: ProviderFactory
) -> tuple[PostgresMigrationsProvider, Cleanup]:
    port = urlsplit(project.dsn).port or 5432
    return make(project, through(project.dsn, port, user="nobody_here")), nothing


async def missing_database(
    project: PrismaProject, make: ProviderFactory
) -> tuple[PostgresMigrationsProvider, Cleanup]:
    port = urlsplit(project.dsn).port or 5432
    return make(project, through(project.dsn, port, database="no_such_db")), nothing


async def lock_held(
    project: PrismaProject, make: ProviderFactory
) -> tuple[PostgresMigrationsProvider, Cleanup]:
    holder = await asyncpg.connect(project.dsn)
    await holder.execute("SELECT pg_advisory_lock($1)", PRISMA_LOCK)
    return make(project), holder.close


async def statement_timeout(
    project: PrismaProject, make: ProviderFactory
) -> tuple[PostgresMigrationsProvider, Cleanup]:
    project.write(
        ADD_POSTS, (project.migrations_dir / ADD_POSTS / "migration.sql").read_text(), SLOW_DOWN
    )
    return make(project, statement_timeout_seconds=0.5), nothing


async def cut_before(
    project: PrismaProject, make: ProviderFactory
) -> tuple[PostgresMigrationsProvider, Cleanup]:
    port = urlsplit(project.dsn).port or 5432
    proxy = await TcpProxy([("127.0.0.1", port)]).start()
    proxy.cut()
    return make(project, through(project.dsn, proxy.port), connect_timeout_seconds=1), proxy.close


async def cut_mid_transaction(
    project: PrismaProject, make: ProviderFactory
) -> tuple[PostgresMigrationsProvider, Cleanup]:
    project.write(
        ADD_POSTS, (project.migrations_dir / ADD_POSTS / "migration.sql").read_text(), SLOW_DOWN
    )
    port = urlsplit(project.dsn).port or 5432
    proxy = await TcpProxy([("127.0.0.1", port)]).start()

    async def cut_while_sleeping() -> None:
        while True:
            busy = await project.sql(
                "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(3)%'"
            )
            if busy:
                proxy.cut()
                return
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(cut_while_sleeping())

    async def cleanup() -> None:
        watcher.cancel()
        await proxy.close()

    return make(project, through(project.dsn, proxy.port), connect_timeout_seconds=2), cleanup


CASES: dict[str, tuple[Fault, Case]] = {
    "credentials refused": (Fault.UNAUTHORIZED, unknown_role),
    "database missing": (Fault.NOT_FOUND, missing_database),
    "prisma lock held by a deploy": (Fault.CONFLICT, lock_held),
    "statement timeout in down.sql": (Fault.TIMEOUT, statement_timeout),
    "connection refused before reading": (Fault.RESET, cut_before),
    "connection cut mid-transaction": (Fault.RESET, cut_mid_transaction),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_each_database_fault_is_named_and_changes_nothing(
    prisma_db: PrismaProject, make_provider: ProviderFactory, case: str
) -> None:
    fault, arrange = CASES[case]
    before = await prisma_db.snapshot()
    provider, cleanup = await arrange(prisma_db, make_provider)
    try:
        with pytest.raises(ProviderError) as failed:
            await provider.rollback(INIT, Recorder())
    finally:
        await cleanup()

    assert_names_cause(fault, failed.value.message)
    assert await prisma_db.snapshot() == before
    # Whatever the provider says of the target, asked again directly, is the truth.
    truth = await make_provider(prisma_db).describe_state()
    assert truth == f"database {prisma_db.dsn.rsplit('/', 1)[1]} is at migration {ADD_POSTS}"
    said = failed.value.target_state
    if said is not None and "unknown" not in said:
        assert f"at migration {ADD_POSTS}" in said
