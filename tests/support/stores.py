"""Store fixtures: one store contract, run on every store rollbot ships.

`store_url` is parametrized over SQLite (a file) and PostgreSQL (a fresh database on the
test server); `store` is opened on it, and `other` is a second store on the same data, as
a second replica or process would have.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bot.models import Rollback
from bot.store import Store, open_store
from tests.support.migrations import PgDatabaseFactory

STORES = ("sqlite", "postgresql")


def make(rollback_id: str = "rb-1", **fields: object) -> Rollback:
    """Build a rollback with sensible defaults."""
    values: dict[str, object] = {
        "id": rollback_id,
        "service": "backend",
        "environment": "production",
        "requested_by": "U1",
        "current_version": "v1.2.4",
        "target_version": "v1.2.3",
    }
    values.update(fields)
    return Rollback.model_validate(values)


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Which store a test runs on."""
    return str(request.param)


@pytest.fixture
async def store_url(store_kind: str, tmp_path: Path, pg_database: PgDatabaseFactory) -> str:
    """The URL of an empty store of each kind."""
    if store_kind == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'rollbot.db'}"
    return await pg_database()


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An open store of each kind."""
    opened = open_store(store_url)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def other(store_url: str, store: Store) -> AsyncIterator[Store]:
    """A second store on the same data, as a second replica would have."""
    second = open_store(store_url)
    await second.open()
    yield second
    await second.close()


async def execute_raw(url: str, sql: str) -> None:
    """Run one SQL statement on a store's data behind its back, as another client would."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            conn.execute(sql)
            conn.commit()
        finally:
            conn.close()
        return
    pg = await asyncpg.connect(url, timeout=10)
    try:
        await pg.execute(sql)
    finally:
        await pg.close()
