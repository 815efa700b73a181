"""The SQLite store's connection, schema and numbered migrations, shared by its parts."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from bot.store.rows import aware

BUSY_TIMEOUT_MS = 5000

# Migration N brings a database from user_version N-1 to N. The first one creates what
# stores before versioning had (IF NOT EXISTS), so their files upgrade in place.
V1 = """
CREATE TABLE IF NOT EXISTS rollbacks (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS rollbacks_target
    ON rollbacks (service, environment, created_at);
CREATE INDEX IF NOT EXISTS rollbacks_state ON rollbacks (state, created_at);
CREATE INDEX IF NOT EXISTS rollbacks_created ON rollbacks (created_at);

CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rollback_id TEXT NOT NULL REFERENCES rollbacks (id),
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_rollback ON events (rollback_id, at, seq);

CREATE TABLE IF NOT EXISTS approvals (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rollback_id TEXT NOT NULL REFERENCES rollbacks (id),
    user TEXT NOT NULL,
    at TEXT NOT NULL,
    UNIQUE (rollback_id, user)
);

CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    rollback_id TEXT,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_rollback ON audit (rollback_id, at, seq);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;

CREATE TABLE IF NOT EXISTS locks (
    key TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    rollback_id TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS checklist (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rollback_id TEXT NOT NULL REFERENCES rollbacks (id),
    item TEXT NOT NULL,
    done INTEGER NOT NULL,
    actor TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS checklist_rollback ON checklist (rollback_id, seq);
CREATE TRIGGER IF NOT EXISTS checklist_no_update BEFORE UPDATE ON checklist
BEGIN
    SELECT RAISE(ABORT, 'checklist history is append-only');
END;
CREATE TRIGGER IF NOT EXISTS checklist_no_delete BEFORE DELETE ON checklist
BEGIN
    SELECT RAISE(ABORT, 'checklist history is append-only');
END;

CREATE TABLE IF NOT EXISTS deliveries (
    rollback_id TEXT NOT NULL REFERENCES rollbacks (id),
    key TEXT NOT NULL,
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    channel TEXT,
    ts TEXT,
    body TEXT,
    PRIMARY KEY (rollback_id, key)
);

CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    rollback_id TEXT NOT NULL REFERENCES rollbacks (id),
    kind TEXT NOT NULL,
    due_at TEXT NOT NULL,
    state TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}',
    attempts INTEGER NOT NULL DEFAULT 0,
    claim TEXT,
    lease_until TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, due_at);
CREATE INDEX IF NOT EXISTS jobs_rollback ON jobs (rollback_id, kind);
"""

# Rollbacks: one open slot per service+environment, as a constraint. Locks become fenced
# leases; a counter hands out their tokens. Slack requests seen, for exactly-once handling.
V2 = """
ALTER TABLE rollbacks ADD COLUMN open_key TEXT;
UPDATE rollbacks SET open_key = service || '/' || environment
WHERE id IN (
    SELECT id FROM (
        SELECT id, row_number() OVER (
            PARTITION BY service, environment ORDER BY created_at DESC
        ) AS newest
        FROM rollbacks
        WHERE state IN (
            'requested', 'severity_confirmed', 'awaiting_approval', 'approved', 'running',
            'verifying'
        ) AND coalesce(json_extract(data, '$.dry_run'), 0) = 0
    ) WHERE newest = 1
);
CREATE UNIQUE INDEX rollbacks_open ON rollbacks (open_key);
DROP TABLE IF EXISTS locks;
CREATE TABLE leases (
    key TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    rollback_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    token INTEGER NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE fences (id INTEGER PRIMARY KEY CHECK (id = 1), token INTEGER NOT NULL);
INSERT INTO fences (id, token) VALUES (1, 0);
CREATE TABLE requests (key TEXT PRIMARY KEY, at TEXT NOT NULL);
CREATE INDEX requests_at ON requests (at);
"""

MIGRATIONS = (V1, V2)


def statements(script: str) -> list[str]:
    """Split a script into whole statements (a trigger's body stays in one)."""
    found, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            found.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement: {pending.strip()[:60]}")
    return found


def iso(value: datetime) -> str:
    """Return a fixed-width UTC ISO-8601 text that sorts like the instant it names."""
    return aware(value).astimezone(UTC).isoformat(timespec="microseconds")


def when(text: str) -> datetime:
    """Parse a stored timestamp back into an aware UTC datetime."""
    return datetime.fromisoformat(text).astimezone(UTC)


def placeholders(values: Collection[object]) -> str:
    """Return `?, ?, ...` for an SQL IN list."""
    return ", ".join("?" * len(values))


class SQLiteBase:
    """One connection to one SQLite file in WAL mode; several processes may share the file."""

    def __init__(self, path: str) -> None:
        self.path = path if path == ":memory:" else str(Path(path).expanduser())
        self._conn: aiosqlite.Connection | None = None
        # One connection runs one transaction at a time: without this, a second task's
        # statement would slip into the first task's open BEGIN IMMEDIATE.
        self._mutex = asyncio.Lock()
        self._pruned_at: datetime | None = None

    async def open(self) -> None:
        """Connect, set the pragmas and migrate the schema; idempotent."""
        if self._conn is not None:
            return
        if self.path != ":memory:":
            await asyncio.to_thread(Path(self.path).parent.mkdir, parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves instead of letting the
        # sqlite3 module open deferred transactions that can fail to upgrade to writes.
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            conn.row_factory = aiosqlite.Row
            # busy_timeout first, so switching to WAL waits for other openers.
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            self._conn = conn
            await self._migrate()
        except BaseException:
            self._conn = None
            await conn.close()
            raise

    async def _migrate(self) -> None:
        """Apply the migrations this file lacks, in one write transaction."""
        async with self._transaction() as conn:
            rows = list(await conn.execute_fetchall("PRAGMA user_version"))
            version = int(rows[0][0])
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements(script):
                    await conn.execute(statement)
                await conn.execute(f"PRAGMA user_version = {number}")

    async def close(self) -> None:
        """Close the connection; idempotent."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def ping(self) -> None:
        """Raise unless the file answers now (a store that was never opened does not)."""
        async with self._reading() as conn:
            await conn.execute_fetchall("SELECT 1")

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """Lend the connection for one SELECT, which SQLite answers from one snapshot.

        No BEGIN and COMMIT around it: each is a trip to the connection's thread, and a
        read that needs two statements to agree must be one statement (or a transaction).
        """
        if self._conn is None:
            raise RuntimeError("SQLiteStore is not open: await store.open() first")
        async with self._mutex:
            yield self._conn

    @asynccontextmanager
    async def _transaction(self, mode: str = "IMMEDIATE") -> AsyncIterator[aiosqlite.Connection]:
        """Run a block in one transaction; IMMEDIATE takes the write lock up front."""
        if self._conn is None:
            raise RuntimeError("SQLiteStore is not open: await store.open() first")
        conn = self._conn
        async with self._mutex:
            await conn.execute(f"BEGIN {mode}")
            try:
                yield conn
                await conn.commit()
            except BaseException:
                # Shielded so a second cancellation cannot leave the transaction open
                # (aiosqlite runs calls in order, so the next BEGIN still waits for it).
                if conn.in_transaction:
                    await asyncio.shield(conn.rollback())
                raise
