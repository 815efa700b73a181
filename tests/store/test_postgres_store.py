"""What only the PostgreSQL store has: URL options, migrations under a lock, outages, PgBouncer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlsplit

import asyncpg
import pytest

from bot.models import Rollback, State
from bot.states import LockChange
from bot.store import StoreUnavailable, open_store
from bot.store.base import Change, LeaseGrant
from bot.store.pg_base import PgOptions, migrations
from bot.store.postgres import PostgresStore
from tests.support.docker import free_port
from tests.support.migrations import PgDatabaseFactory
from tests.support.proxy import tcp_proxy


def rollback(rollback_id: str, environment: str = "production") -> Rollback:
    return Rollback(
        id=rollback_id,
        service="backend",
        environment=environment,
        requested_by="U1",
        current_version="v1.2.4",
        target_version="v1.2.3",
        state=State.AWAITING_APPROVAL,
    )


def test_url_options_are_read_and_the_rest_goes_to_asyncpg() -> None:
    options = PgOptions.from_url(
        "postgresql://app:s3cret@db.internal:6432/rollbot?pool_size=4&statement_timeout=2500"
        "&pgbouncer=true&sslmode=require&connect_timeout=1.5"
    )
    assert (options.pool_size, options.statement_timeout_ms) == (4, 2500)
    assert options.pgbouncer and options.connect_timeout == 1.5
    assert options.dsn == "postgresql://app:s3cret@db.internal:6432/rollbot?sslmode=require"
    assert options.where == "db.internal:6432/rollbot"
    assert not PgOptions.from_url("postgresql://h/db").pgbouncer


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://h/db?schema=app", "unknown options schema"),
        ("postgresql://h/db?pool_size=ten", "not a number"),
        ("postgresql://h/db?pool_size=2&pool_min_size=3", "pool_min_size <= pool_size"),
        ("postgresql://h/db?statement_timeout=0", "positive"),
    ],
)
def test_bad_url_options_are_refused_with_the_reason(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        PgOptions.from_url(url)


async def test_replicas_starting_together_migrate_once(pg_database: PgDatabaseFactory) -> None:
    url = await pg_database()
    stores = [PostgresStore(url) for _ in range(4)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT version, name FROM rollbot_migrations ORDER BY 1")
        finally:
            await conn.close()
        assert [(r["version"], r["name"]) for r in rows] == [(n, m) for n, m, _ in migrations()]
        await stores[0].create(rollback("rb-1"))
        assert await stores[3].get("rb-1") is not None
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_a_schema_newer_than_this_rollbot_is_refused(pg_database: PgDatabaseFactory) -> None:
    url = await pg_database()
    async with PostgresStore(url):
        pass
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO rollbot_migrations (version, name) VALUES (999, 'future')")
    finally:
        await conn.close()
    with pytest.raises(RuntimeError, match="schema version 999, newer than this rollbot"):
        await PostgresStore(url).open()


async def test_an_outage_is_a_clear_error_and_the_store_recovers_by_itself(
    pg_database: PgDatabaseFactory,
) -> None:
    url = urlsplit(await pg_database())
    async with tcp_proxy([(url.hostname or "127.0.0.1", url.port or 5432)]) as proxy:
        through = url._replace(netloc=f"postgres:pw-never-shown@127.0.0.1:{proxy.port}")
        async with PostgresStore(through.geturl() + "?connect_timeout=1") as store:
            await store.create(rollback("rb-1"))
            proxy.cut()
            for attempt in (store.get("rb-1"), store.create(rollback("rb-2", "staging"))):
                with pytest.raises(StoreUnavailable) as down:
                    await attempt
                assert "cannot reach its database" in down.value.message
                assert "pw-never-shown" not in down.value.message
            with pytest.raises(StoreUnavailable):
                await store.ping()
            proxy.restore()
            await store.ping()
            got = await store.get("rb-1")
            assert got is not None and got.state is State.AWAITING_APPROVAL
            # Nothing of the write that failed was half-applied.
            assert await store.get("rb-2") is None
            assert [r.id for r in await store.find()] == ["rb-1"]


async def test_an_unreachable_database_at_start_up_is_a_clear_error() -> None:
    store = open_store(f"postgresql://u:pw-never-shown@127.0.0.1:{free_port()}/x")
    with pytest.raises(StoreUnavailable) as down:
        await store.open()
    assert "pw-never-shown" not in down.value.message and "127.0.0.1" in down.value.message


@pytest.fixture
async def bounced(pgbouncer: str, pg_database: PgDatabaseFactory) -> AsyncIterator[str]:
    """A fresh database reached through PgBouncer with `pgbouncer=true`."""
    database = urlsplit(await pg_database()).path
    yield f"{pgbouncer}{database}?pgbouncer=true&statement_timeout=3000&pool_size=8"


async def test_through_pgbouncer_in_transaction_mode(bounced: str) -> None:
    # Without the flag, the startup setting is refused by PgBouncer.
    with pytest.raises(Exception, match="statement_timeout"):
        await PostgresStore(bounced.replace("pgbouncer=true", "pgbouncer=false")).open()
    async with PostgresStore(bounced) as one, PostgresStore(bounced) as two:
        async with one._transaction() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == "3s"
        await asyncio.gather(*(one.create(rollback(f"rb-{i}", f"env-{i}")) for i in range(10)))
        grant = LeaseGrant("U1", "me", timedelta(minutes=1))
        moves = await asyncio.gather(
            *(
                (one, two)[i % 2].apply(
                    Change(
                        rollback_id=f"rb-{i % 10}",
                        sources=frozenset({State.AWAITING_APPROVAL}),
                        target=State.APPROVED,
                        lock=LockChange.TAKE,
                        audit=[],
                        grant=grant,
                    )
                )
                for i in range(40)
            )
        )
        assert sum(move.rollback is not None for move in moves) == 10
        assert len(await two.locks()) == 10
        assert {r.state for r in await two.find()} == {State.APPROVED}
