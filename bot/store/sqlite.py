"""The embedded store: one SQLite file in WAL mode, safe for several processes."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
from pydantic import TypeAdapter

from bot.jobs import LIVE_JOB_STATES, Job, JobKind, JobState
from bot.models import FINAL_STATES, AuditEntry, Event, Lock, Rollback, State, utcnow
from bot.records import ChecklistMark, Delivery

BUSY_TIMEOUT_MS = 5000

# Columns are the fields that are filtered, ordered or compare-and-set on; the rest of
# a Rollback lives in the `data` JSON column so a new model field needs no migration.
_COLUMNS = ("id", "service", "environment", "state", "created_at", "updated_at", "finished_at")
# approved_by is not stored on the row: the approvals table is its one source of truth.
_DERIVED = frozenset({"approved_by"})
_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    name: TypeAdapter(info.annotation)
    for name, info in Rollback.model_fields.items()
    if info.annotation is not None
}
# SQL text is built only from the names above and `?` placeholders (hence the S608
# waivers below); every value travels as a bound parameter.

SCHEMA = """
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


def _iso(value: datetime) -> str:
    """Return a fixed-width UTC ISO-8601 text that sorts like the instant it names."""
    if value.tzinfo is None:
        # Naive datetimes in this codebase come from utcnow()-style code that lost its
        # tz; treating them as UTC beats silently shifting them by the host's offset.
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _when(text: str) -> datetime:
    """Parse a stored timestamp back into an aware UTC datetime."""
    return datetime.fromisoformat(text).astimezone(UTC)


def _placeholders(values: Collection[object]) -> str:
    """Return `?, ?, ...` for an SQL IN list."""
    return ", ".join("?" * len(values))


def _encode(fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Validate Rollback fields and split them into column values, JSON values, approvers."""
    columns: dict[str, Any] = {}
    data: dict[str, str] = {}
    approvers: list[str] = []
    for name, raw in fields.items():
        adapter = _ADAPTERS.get(name)
        if adapter is None:
            raise ValueError(f"Rollback has no field {name!r}")
        value = adapter.validate_python(raw)
        if name in _DERIVED:
            approvers = list(value)
        elif name in _COLUMNS:
            columns[name] = _iso(value) if isinstance(value, datetime) else value
        else:
            data[name] = json.dumps(adapter.dump_python(value, mode="json"))
    return columns, data, approvers


def _lock(row: aiosqlite.Row) -> Lock:
    """Build a Lock from its row."""
    return Lock(
        key=row["key"],
        holder=row["holder"],
        rollback_id=row["rollback_id"],
        expires_at=_when(row["expires_at"]),
    )


class SQLiteStore:
    """The Store on one SQLite file; several processes may share it."""

    def __init__(self, path: str) -> None:
        self.path = path if path == ":memory:" else str(Path(path).expanduser())
        self._conn: aiosqlite.Connection | None = None
        # One connection runs one transaction at a time: without this, a second task's
        # statement would slip into the first task's open BEGIN IMMEDIATE.
        self._mutex = asyncio.Lock()

    async def open(self) -> None:
        """Connect, set the pragmas and create the tables; idempotent."""
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
            await conn.executescript(SCHEMA)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        """Close the connection; idempotent."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # An unclosed aiosqlite connection keeps a non-daemon thread alive, which hangs
        # interpreter exit: `async with` makes closing impossible to forget.
        await self.close()

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

    async def create(self, rollback: Rollback) -> None:
        """Insert a new rollback; its id must be new."""
        columns, _, _ = _encode({name: getattr(rollback, name) for name in _COLUMNS})
        body = rollback.model_dump(mode="json", exclude={*_COLUMNS, *_DERIVED})
        async with self._transaction() as conn:
            try:
                await conn.execute(
                    f"INSERT INTO rollbacks ({', '.join(_COLUMNS)}, data) "  # noqa: S608
                    f"VALUES ({_placeholders(_COLUMNS)}, ?)",
                    [*(columns[name] for name in _COLUMNS), json.dumps(body)],
                )
            except aiosqlite.IntegrityError as exc:
                raise ValueError(f"rollback {rollback.id!r} already exists") from exc
            await self._approve(conn, rollback.id, rollback.approved_by)

    async def get(self, rollback_id: str) -> Rollback | None:
        """Return the rollback with this id, or None."""
        async with self._transaction("DEFERRED") as conn:
            found = await self._select(conn, "WHERE id = ?", [rollback_id])
        return found[0] if found else None

    async def transition(
        self, rollback_id: str, expected: Collection[State], new: State, **fields: Any
    ) -> Rollback | None:
        """Atomically move from one of `expected` to `new`, setting `fields`."""
        if "state" in fields or "id" in fields:
            raise ValueError("transition sets the state itself and never changes the id")
        new = State(new)
        if new in FINAL_STATES:
            fields.setdefault("finished_at", utcnow())
        fields["state"] = new
        allowed = [State(state).value for state in expected]
        if not allowed:
            return None
        async with self._transaction() as conn:
            changed = await self._update(
                conn, rollback_id, fields, f"AND state IN ({_placeholders(allowed)})", allowed
            )
            if not changed:
                return None
            return (await self._select(conn, "WHERE id = ?", [rollback_id]))[0]

    async def update(self, rollback_id: str, **fields: Any) -> Rollback:
        """Set fields that are not the state (Slack coordinates, severity, error)."""
        if "state" in fields or "id" in fields:
            raise ValueError("update never changes state or id: use transition()")
        async with self._transaction() as conn:
            if not await self._update(conn, rollback_id, fields, "", []):
                raise KeyError(rollback_id)
            return (await self._select(conn, "WHERE id = ?", [rollback_id]))[0]

    async def add_approval(self, rollback_id: str, user: str) -> list[str]:
        """Record one approval per user, idempotently; return all approvers in order."""
        async with self._transaction() as conn:
            try:
                await self._approve(conn, rollback_id, [user])
            except aiosqlite.IntegrityError as exc:
                raise KeyError(rollback_id) from exc
            return (await self._approvers(conn, [rollback_id])).get(rollback_id, [])

    async def add_event(self, event: Event) -> None:
        """Append a line to a rollback's timeline."""
        async with self._transaction() as conn:
            try:
                await conn.execute(
                    "INSERT INTO events (rollback_id, at, actor, kind, text) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [event.rollback_id, _iso(event.at), event.actor, event.kind, event.text],
                )
            except aiosqlite.IntegrityError as exc:
                raise KeyError(event.rollback_id) from exc

    async def events(self, rollback_id: str) -> list[Event]:
        """Return a rollback's timeline, oldest first."""
        async with self._transaction("DEFERRED") as conn:
            rows = await conn.execute_fetchall(
                "SELECT * FROM events WHERE rollback_id = ? ORDER BY at, seq", [rollback_id]
            )
        return [
            Event(
                rollback_id=row["rollback_id"],
                at=_when(row["at"]),
                actor=row["actor"],
                kind=row["kind"],
                text=row["text"],
            )
            for row in rows
        ]

    async def audit(self, entry: AuditEntry) -> None:
        """Append an audit record; records are never changed or deleted."""
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO audit (at, actor, action, rollback_id, details) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    _iso(entry.at),
                    entry.actor,
                    entry.action,
                    entry.rollback_id,
                    json.dumps(entry.details),
                ],
            )

    async def audit_log(self, rollback_id: str | None = None) -> list[AuditEntry]:
        """Return audit records, oldest first, optionally for one rollback."""
        where, params = ("WHERE rollback_id = ?", [rollback_id]) if rollback_id else ("", [])
        async with self._transaction("DEFERRED") as conn:
            rows = await conn.execute_fetchall(
                f"SELECT * FROM audit {where} ORDER BY at, seq",  # noqa: S608
                params,
            )
        return [
            AuditEntry(
                at=_when(row["at"]),
                actor=row["actor"],
                action=row["action"],
                rollback_id=row["rollback_id"],
                details=json.loads(row["details"]),
            )
            for row in rows
        ]

    async def acquire_lock(self, key: str, holder: str, rollback_id: str, ttl: timedelta) -> Lock:
        """Take the lock or return who holds it (compare `holder`/`rollback_id`)."""
        now = utcnow()
        async with self._transaction() as conn:
            rows = list(await conn.execute_fetchall("SELECT * FROM locks WHERE key = ?", [key]))
            if rows:
                held = _lock(rows[0])
                if held.rollback_id != rollback_id and held.expires_at >= now:
                    return held
            lock = Lock(key=key, holder=holder, rollback_id=rollback_id, expires_at=now + ttl)
            await conn.execute(
                "INSERT INTO locks (key, holder, rollback_id, expires_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, "
                "rollback_id = excluded.rollback_id, expires_at = excluded.expires_at",
                [key, holder, rollback_id, _iso(lock.expires_at)],
            )
            return lock

    async def release_lock(self, key: str, rollback_id: str) -> None:
        """Release the lock if this rollback holds it."""
        async with self._transaction() as conn:
            await conn.execute(
                "DELETE FROM locks WHERE key = ? AND rollback_id = ?", [key, rollback_id]
            )

    async def locks(self) -> list[Lock]:
        """Return the unexpired locks."""
        async with self._transaction("DEFERRED") as conn:
            rows = await conn.execute_fetchall(
                "SELECT * FROM locks WHERE expires_at >= ? ORDER BY key", [_iso(utcnow())]
            )
        return [_lock(row) for row in rows]

    async def find(
        self,
        *,
        states: Collection[State] | None = None,
        service: str | None = None,
        environment: str | None = None,
        limit: int = 50,
    ) -> list[Rollback]:
        """Return rollbacks matching the filters, newest first."""
        clauses: list[str] = []
        params: list[Any] = []
        if states is not None:
            wanted = [State(state).value for state in states]
            if not wanted:
                return []
            clauses.append(f"state IN ({_placeholders(wanted)})")
            params.extend(wanted)
        for column, value in (("service", service), ("environment", environment)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        async with self._transaction("DEFERRED") as conn:
            return await self._select(
                conn, f"{where} ORDER BY created_at DESC, rowid DESC LIMIT ?", [*params, limit]
            )

    async def count_by_state(self) -> dict[State, int]:
        """Return how many rollbacks are in each state; states with none are left out."""
        async with self._transaction("DEFERRED") as conn:
            rows = await conn.execute_fetchall(
                "SELECT state, COUNT(*) AS n FROM rollbacks GROUP BY state"
            )
        return {State(row["state"]): row["n"] for row in rows}

    # -- checklists and one-time deliveries -----------------------------------------

    async def add_checklist_mark(self, mark: ChecklistMark) -> None:
        """Append a person's tick or untick; marks are never changed or deleted."""
        async with self._transaction() as conn:
            try:
                await conn.execute(
                    "INSERT INTO checklist (rollback_id, item, done, actor, at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [mark.rollback_id, mark.item, int(mark.done), mark.actor, _iso(mark.at)],
                )
            except aiosqlite.IntegrityError as exc:
                raise KeyError(mark.rollback_id) from exc

    async def checklist_marks(self, rollback_id: str) -> list[ChecklistMark]:
        """Return a rollback's checklist marks, oldest first."""
        async with self._transaction("DEFERRED") as conn:
            rows = await conn.execute_fetchall(
                "SELECT * FROM checklist WHERE rollback_id = ? ORDER BY seq", [rollback_id]
            )
        return [
            ChecklistMark(
                rollback_id=row["rollback_id"],
                item=row["item"],
                done=bool(row["done"]),
                actor=row["actor"],
                at=_when(row["at"]),
            )
            for row in rows
        ]

    async def claim_delivery(self, delivery: Delivery) -> bool:
        """Claim (rollback_id, key) for this delivery; False when it was claimed already."""
        async with self._transaction() as conn:
            try:
                cursor = await conn.execute(
                    "INSERT OR IGNORE INTO deliveries "
                    "(rollback_id, key, actor, at, channel, ts, body) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        delivery.rollback_id,
                        delivery.key,
                        delivery.actor,
                        _iso(delivery.at),
                        delivery.channel,
                        delivery.ts,
                        delivery.body,
                    ],
                )
            except aiosqlite.IntegrityError as exc:
                raise KeyError(delivery.rollback_id) from exc
            return cursor.rowcount == 1

    async def update_delivery(
        self,
        rollback_id: str,
        key: str,
        *,
        channel: str | None = None,
        ts: str | None = None,
        body: str | None = None,
    ) -> None:
        """Set the given fields of a claimed delivery (where it was posted, its text)."""
        given = {"channel": channel, "ts": ts, "body": body}
        fields = {name: value for name, value in given.items() if value is not None}
        if not fields:
            return
        sets = ", ".join(f"{name} = ?" for name in fields)
        async with self._transaction() as conn:
            cursor = await conn.execute(
                f"UPDATE deliveries SET {sets} WHERE rollback_id = ? AND key = ?",  # noqa: S608
                [*fields.values(), rollback_id, key],
            )
            if cursor.rowcount != 1:
                raise KeyError(f"{rollback_id}/{key}")

    async def delivery(self, rollback_id: str, key: str) -> Delivery | None:
        """Return a claimed delivery, or None."""
        async with self._transaction("DEFERRED") as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT * FROM deliveries WHERE rollback_id = ? AND key = ?",
                    [rollback_id, key],
                )
            )
        if not rows:
            return None
        row = rows[0]
        return Delivery(
            rollback_id=row["rollback_id"],
            key=row["key"],
            actor=row["actor"],
            at=_when(row["at"]),
            channel=row["channel"],
            ts=row["ts"],
            body=row["body"],
        )

    async def release_delivery(self, rollback_id: str, key: str) -> None:
        """Drop a claim whose work failed, so it can be tried again."""
        async with self._transaction() as conn:
            await conn.execute(
                "DELETE FROM deliveries WHERE rollback_id = ? AND key = ?", [rollback_id, key]
            )

    async def _update(
        self,
        conn: aiosqlite.Connection,
        rollback_id: str,
        fields: dict[str, Any],
        condition: str,
        condition_params: list[Any],
    ) -> bool:
        """Apply `fields` to one row in a single UPDATE; return whether it matched."""
        fields.setdefault("updated_at", utcnow())
        columns, data, approvers = _encode(fields)
        sets = [f"{name} = ?" for name in columns]
        params: list[Any] = list(columns.values())
        if data:
            sets.append(f"data = json_set(data{', ?, json(?)' * len(data)})")
            for name, value in data.items():
                params.extend([f"$.{name}", value])
        cursor = await conn.execute(
            f"UPDATE rollbacks SET {', '.join(sets)} WHERE id = ? {condition}",  # noqa: S608
            [*params, rollback_id, *condition_params],
        )
        if cursor.rowcount != 1:
            return False
        await self._approve(conn, rollback_id, approvers)
        return True

    async def _approve(
        self, conn: aiosqlite.Connection, rollback_id: str, users: Iterable[str]
    ) -> None:
        """Record approvals that are not there yet."""
        at = _iso(utcnow())
        await conn.executemany(
            "INSERT OR IGNORE INTO approvals (rollback_id, user, at) VALUES (?, ?, ?)",
            [(rollback_id, user, at) for user in users],
        )

    async def _approvers(
        self, conn: aiosqlite.Connection, rollback_ids: Collection[str]
    ) -> dict[str, list[str]]:
        """Return the approvers of each rollback, in the order they approved."""
        approvers: dict[str, list[str]] = {}
        if not rollback_ids:
            return approvers
        rows = await conn.execute_fetchall(
            f"SELECT rollback_id, user FROM approvals "  # noqa: S608
            f"WHERE rollback_id IN ({_placeholders(rollback_ids)}) ORDER BY seq",
            list(rollback_ids),
        )
        for row in rows:
            approvers.setdefault(row["rollback_id"], []).append(row["user"])
        return approvers

    async def _select(
        self, conn: aiosqlite.Connection, tail: str, params: list[Any]
    ) -> list[Rollback]:
        """Load rollbacks with `SELECT ... {tail}`, approvers included."""
        query = f"SELECT * FROM rollbacks {tail}"  # noqa: S608
        rows = list(await conn.execute_fetchall(query, params))
        approvers = await self._approvers(conn, [row["id"] for row in rows])
        return [
            Rollback.model_validate(
                {
                    **json.loads(row["data"]),
                    **{name: row[name] for name in _COLUMNS},
                    "approved_by": approvers.get(row["id"], []),
                }
            )
            for row in rows
        ]

    # -- scheduled jobs (monitoring windows, escalations) ------------------------------

    async def schedule_job(self, job: Job) -> bool:
        """Insert a job unless one with its id exists (in any state); return True if inserted."""
        async with self._transaction() as conn:
            try:
                cursor = await conn.execute(
                    "INSERT OR IGNORE INTO jobs (id, rollback_id, kind, due_at, state, payload, "
                    "attempts, claim, lease_until, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, 0, NULL, NULL, ?, ?)",
                    [
                        job.id,
                        job.rollback_id,
                        job.kind.value,
                        _iso(job.due_at),
                        job.state.value,
                        json.dumps(job.payload),
                        _iso(job.created_at),
                        _iso(job.updated_at),
                    ],
                )
            except aiosqlite.IntegrityError as exc:
                raise KeyError(job.rollback_id) from exc
            return cursor.rowcount == 1

    async def get_job(self, job_id: str) -> Job | None:
        """Return the job with this id, or None."""
        async with self._transaction("DEFERRED") as conn:
            rows = list(await conn.execute_fetchall("SELECT * FROM jobs WHERE id = ?", [job_id]))
        return _job(rows[0]) if rows else None

    async def due_jobs(self, now: datetime, limit: int = 50) -> list[Job]:
        """Return pending jobs due by `now` and running ones whose lease has passed."""
        async with self._transaction("DEFERRED") as conn:
            rows = await conn.execute_fetchall(
                f"SELECT * FROM jobs WHERE {_CLAIMABLE} ORDER BY due_at, id LIMIT ?",  # noqa: S608
                [_iso(now), _iso(now), limit],
            )
        return [_job(row) for row in rows]

    async def claim_job(self, job_id: str, now: datetime, lease: timedelta) -> Job | None:
        """Atomically take a due job (or one whose lease has passed) for one run."""
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE jobs SET state = ?, claim = ?, lease_until = ?, "  # noqa: S608
                f"attempts = attempts + 1, updated_at = ? WHERE id = ? AND {_CLAIMABLE}",
                [
                    JobState.RUNNING.value,
                    secrets.token_hex(8),
                    _iso(now + lease),
                    _iso(utcnow()),
                    job_id,
                    _iso(now),
                    _iso(now),
                ],
            )
            if cursor.rowcount != 1:
                return None
            rows = await conn.execute_fetchall("SELECT * FROM jobs WHERE id = ?", [job_id])
            return _job(next(iter(rows)))

    async def finish_job(
        self,
        claimed: Job,
        state: JobState,
        *,
        due_at: datetime | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Job | None:
        """End a run: leave the job `state` (pending again at `due_at`, done or failed)."""
        state = JobState(state)
        if state not in {JobState.PENDING, JobState.DONE, JobState.FAILED}:
            raise ValueError(f"a run cannot leave a job {state.value}: use cancel_jobs()")
        sets = ["state = ?", "claim = NULL", "lease_until = NULL", "updated_at = ?"]
        params: list[Any] = [state.value, _iso(utcnow())]
        if due_at is not None:
            sets.append("due_at = ?")
            params.append(_iso(due_at))
        if payload is not None:
            sets += ["payload = ?", "attempts = 0"]
            params.append(json.dumps(payload))
        async with self._transaction() as conn:
            cursor = await conn.execute(
                f"UPDATE jobs SET {', '.join(sets)} "  # noqa: S608
                "WHERE id = ? AND state = ? AND claim = ?",
                [*params, claimed.id, JobState.RUNNING.value, claimed.claim],
            )
            if cursor.rowcount != 1:
                return None
            rows = await conn.execute_fetchall("SELECT * FROM jobs WHERE id = ?", [claimed.id])
            return _job(next(iter(rows)))

    async def cancel_jobs(
        self, rollback_id: str, kinds: Collection[JobKind] | None = None
    ) -> list[Job]:
        """Cancel a rollback's pending and running jobs (of these kinds); return those cancelled."""
        where, params = _live_jobs(kinds)
        async with self._transaction() as conn:
            rows = list(
                await conn.execute_fetchall(
                    f"SELECT * FROM jobs WHERE rollback_id = ? AND {where}",  # noqa: S608
                    [rollback_id, *params],
                )
            )
            ids = [row["id"] for row in rows]
            if ids:
                await conn.execute(
                    "UPDATE jobs SET state = ?, claim = NULL, "  # noqa: S608
                    f"lease_until = NULL, updated_at = ? WHERE id IN ({_placeholders(ids)})",
                    [JobState.CANCELLED.value, _iso(utcnow()), *ids],
                )
        return [_job(row).model_copy(update={"state": JobState.CANCELLED}) for row in rows]

    async def pending_jobs(self, kinds: Collection[JobKind] | None = None) -> list[Job]:
        """Return the pending and running jobs (of these kinds), soonest due first."""
        where, params = _live_jobs(kinds)
        async with self._transaction("DEFERRED") as conn:
            rows = await conn.execute_fetchall(
                f"SELECT * FROM jobs WHERE {where} ORDER BY due_at, id",  # noqa: S608
                params,
            )
        return [_job(row) for row in rows]


# A job a run may take: pending and due, or running under a lease that has passed (its
# process died). Parameters: now, now.
_CLAIMABLE = "((state = 'pending' AND due_at <= ?) OR (state = 'running' AND lease_until < ?))"


def _live_jobs(kinds: Collection[JobKind] | None) -> tuple[str, list[Any]]:
    """Return an SQL condition (and its parameters) for pending and running jobs of kinds."""
    states = [state.value for state in LIVE_JOB_STATES]
    where = f"state IN ({_placeholders(states)})"
    params: list[Any] = list(states)
    if kinds is not None:
        wanted = [JobKind(kind).value for kind in kinds] or [""]
        where += f" AND kind IN ({_placeholders(wanted)})"
        params += wanted
    return where, params


def _job(row: aiosqlite.Row) -> Job:
    """Build a Job from its row."""
    return Job(
        id=row["id"],
        rollback_id=row["rollback_id"],
        kind=row["kind"],
        due_at=_when(row["due_at"]),
        state=row["state"],
        payload=json.loads(row["payload"]),
        attempts=row["attempts"],
        claim=row["claim"],
        lease_until=_when(row["lease_until"]) if row["lease_until"] else None,
        created_at=_when(row["created_at"]),
        updated_at=_when(row["updated_at"]),
    )
