"""The SQLite store against real database files, including two stores racing on one file."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.models import State
from bot.store import open_store
from bot.store.base import OpenSlotTaken
from bot.store.sqlite import SQLiteStore
from bot.store.sqlite_base import MIGRATIONS, V1
from tests.support.stores import make

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "rollbot.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(str(db_path))
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def other(db_path: Path, store: SQLiteStore) -> AsyncIterator[SQLiteStore]:
    """A second store on the same file, as a second process would have."""
    other = SQLiteStore(str(db_path))
    await other.open()
    yield other
    await other.close()


async def test_open_creates_folder_is_idempotent_and_uses_wal(db_path: Path) -> None:
    async with SQLiteStore(str(db_path)) as store:
        await store.open()
    await store.close()
    async with SQLiteStore(str(db_path)) as again:
        await again.create(make())
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_connection_pragmas(store: SQLiteStore) -> None:
    assert store._conn is not None
    pragmas = {}
    for name in ("journal_mode", "busy_timeout", "foreign_keys"):
        async with store._conn.execute(f"PRAGMA {name}") as cursor:
            row = await cursor.fetchone()
        assert row is not None
        pragmas[name] = row[0]
    assert pragmas == {"journal_mode": "wal", "busy_timeout": 5000, "foreign_keys": 1}


async def test_open_store_url(tmp_path: Path) -> None:
    path = tmp_path / "abs" / "r.db"
    store = open_store(f"sqlite:///{path}")
    assert isinstance(store, SQLiteStore)
    assert store.path == str(path)
    async with store:
        await store.create(make())
    assert path.exists()


async def test_memory_store() -> None:
    async with SQLiteStore(":memory:") as store:
        rollback = make()
        await store.create(rollback)
        assert await store.get("rb-1") == rollback


async def test_a_store_of_an_earlier_version_is_upgraded_in_place(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as old:
        old.executescript(V1)
        for rid, state, created in (
            ("rb-old", "failed", "2024-05-01T10:00:00.000000+00:00"),
            ("rb-a", "awaiting_approval", "2024-05-01T11:00:00.000000+00:00"),
            ("rb-b", "requested", "2024-05-01T12:00:00.000000+00:00"),
        ):
            old.execute(
                "INSERT INTO rollbacks VALUES (?, 'backend', 'production', ?, ?, ?, NULL, ?)",
                [
                    rid,
                    state,
                    created,
                    created,
                    '{"requested_by": "U1", "current_version": "v2", "target_version": "v1"}',
                ],
            )
        old.execute("INSERT INTO locks VALUES ('backend/production', 'U1', 'rb-a', '2999-01-01')")
    async with SQLiteStore(str(db_path)) as upgraded, SQLiteStore(str(db_path)) as again:
        got = await upgraded.get("rb-a")
        assert got is not None and got.state is State.AWAITING_APPROVAL
        assert await again.locks() == []
        # The newest open rollback keeps the slot; creating another is refused.
        with pytest.raises(OpenSlotTaken) as taken:
            await upgraded.create(make("rb-new"))
        assert taken.value.other.id == "rb-b"
    with sqlite3.connect(db_path) as check:
        assert check.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
