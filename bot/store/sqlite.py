"""The embedded store: one SQLite file in WAL mode, safe for several processes."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from bot.models import FINAL_STATES, AuditEntry, Event, Lock, Rollback, State, utcnow
from bot.states import LockChange
from bot.store.base import (
    Applied,
    Change,
    Fenced,
    LeaseGrant,
    OpenSlotTaken,
    Refusal,
)
from bot.store.rows import COLUMNS, encode, json_body, to_rollback
from bot.store.sqlite_base import iso, placeholders, when
from bot.store.sqlite_jobs import SQLiteJobs
from bot.store.sqlite_records import SQLiteRecords


def _lock(row: aiosqlite.Row) -> Lock:
    """Build a Lock from its lease row."""
    return Lock(
        key=row["key"],
        holder=row["holder"],
        rollback_id=row["rollback_id"],
        expires_at=when(row["expires_at"]),
        owner=row["owner"],
        token=row["token"],
    )


class SQLiteStore(SQLiteJobs, SQLiteRecords):
    """The Store on one SQLite file; several processes may share it."""

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # An unclosed aiosqlite connection keeps a non-daemon thread alive, which hangs
        # interpreter exit: `async with` makes closing impossible to forget.
        await self.close()

    async def create(
        self, rollback: Rollback, audit: AuditEntry | None = None, event: Event | None = None
    ) -> None:
        """Insert a new rollback with its first records; refuse a second open one."""
        columns = _columns({name: getattr(rollback, name) for name in COLUMNS})
        async with self._transaction() as conn:
            if await self._select(conn, "WHERE id = ?", [rollback.id]):
                raise ValueError(f"rollback {rollback.id!r} already exists")
            if rollback.open_key is not None:
                other = await self._select(conn, "WHERE open_key = ?", [rollback.open_key])
                if other:
                    raise OpenSlotTaken(other[0])
            try:
                await conn.execute(
                    f"INSERT INTO rollbacks ({', '.join(COLUMNS)}, open_key, data) "  # noqa: S608
                    f"VALUES ({placeholders(COLUMNS)}, ?, ?)",
                    [
                        *(columns[name] for name in COLUMNS),
                        rollback.open_key,
                        json.dumps(json_body(rollback)),
                    ],
                )
            except aiosqlite.IntegrityError as exc:
                raise ValueError(f"rollback {rollback.id!r} already exists") from exc
            await self._approve(conn, rollback.id, rollback.approved_by)
            await self._record(conn, audit, event)

    async def get(self, rollback_id: str) -> Rollback | None:
        """Return the rollback with this id, or None."""
        async with self._reading() as conn:
            found = await self._select(conn, "WHERE id = ?", [rollback_id])
        return found[0] if found else None

    async def apply(self, change: Change) -> Applied:
        """Apply one transition: state, fields, lock, audit and timeline in one transaction."""
        if {"state", "id", "open_key"} & set(change.fields):
            raise ValueError("a change sets the state itself and never changes the id")
        if change.lock is LockChange.KEEP and change.token is None:
            raise ValueError("keeping the lock needs the lease's token")
        if change.lock is LockChange.TAKE and change.grant is None:
            raise ValueError("taking the lock needs a grant")
        now = utcnow()
        async with self._transaction() as conn:
            found = await self._select(conn, "WHERE id = ?", [change.rollback_id])
            if not found:
                raise KeyError(change.rollback_id)
            rb = found[0]
            if rb.state not in change.sources:
                return Applied(None, refusal=Refusal.STATE, current=rb)
            held = await self._lease(conn, rb.lock_key)
            if change.token is not None and not _holds(held, rb.id, change.token):
                return Applied(None, refusal=Refusal.FENCED, current=rb, blocker=held)
            moved = rb.model_copy(update={"state": change.target})
            if moved.open_key is not None:
                other = await self._select(
                    conn, "WHERE open_key = ? AND id != ?", [moved.open_key, rb.id]
                )
                if other:
                    return Applied(None, refusal=Refusal.TAKEN, current=rb, blocker=other[0])
            lease: Lock | None = held if held is not None and held.rollback_id == rb.id else None
            if change.lock is LockChange.TAKE:
                assert change.grant is not None
                if held is not None and held.rollback_id != rb.id and held.live(now):
                    return Applied(None, refusal=Refusal.BUSY, current=rb, blocker=held)
                lease = await self._grant(conn, rb.lock_key, rb.id, change.grant, now)
            fields: dict[str, Any] = {**change.fields, "state": change.target}
            if change.target in FINAL_STATES:
                fields.setdefault("finished_at", now)
            await self._update(conn, rb.id, fields, open_key=moved.open_key)
            if change.lock is LockChange.RELEASE or change.target in FINAL_STATES:
                await conn.execute(
                    "DELETE FROM leases WHERE key = ? AND rollback_id = ?", [rb.lock_key, rb.id]
                )
                lease = None
            # Dated when written, not when built: a change that waited for the write lock
            # must not be dated before one that was written ahead of it.
            for entry in change.audit:
                await self._record(conn, entry.model_copy(update={"at": now}), None)
            for event in change.events:
                await self._record(conn, None, event.model_copy(update={"at": now}))
            moved = (await self._select(conn, "WHERE id = ?", [rb.id]))[0]
            return Applied(moved, lease, previous=rb.state)

    async def update(
        self, rollback_id: str, *, fence: tuple[str, int] | None = None, **fields: Any
    ) -> Rollback:
        """Set fields that are not the state; with `fence`, only under that live lease."""
        if {"state", "id", "open_key"} & set(fields):
            raise ValueError("update never changes state or id: apply a transition")
        async with self._transaction() as conn:
            if fence is not None:
                key, token = fence
                if not _holds(await self._lease(conn, key), rollback_id, token):
                    raise Fenced(
                        f"Rollback {rollback_id} was taken over by another rollbot process; "
                        "this one stops here."
                    )
            if not await self._update(conn, rollback_id, fields):
                raise KeyError(rollback_id)
            return (await self._select(conn, "WHERE id = ?", [rollback_id]))[0]

    async def add_approval(
        self, rollback_id: str, user: str, audit: AuditEntry, event: Event
    ) -> list[str] | None:
        """Record a new approval while the rollback awaits it; None when nothing was written."""
        async with self._transaction() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT state FROM rollbacks WHERE id = ?", [rollback_id]
                )
            )
            if not rows:
                raise KeyError(rollback_id)
            if rows[0]["state"] != State.AWAITING_APPROVAL.value:
                return None
            if not await self._approve(conn, rollback_id, [user]):
                return None
            await self._record(conn, audit, event)
            return (await self._approvers(conn, [rollback_id])).get(rollback_id, [])

    async def add_event(self, event: Event) -> None:
        """Append a line to a rollback's timeline."""
        async with self._transaction() as conn:
            await self._record(conn, None, event)

    async def events(self, rollback_id: str) -> list[Event]:
        """Return a rollback's timeline, oldest first."""
        async with self._reading() as conn:
            rows = await conn.execute_fetchall(
                "SELECT * FROM events WHERE rollback_id = ? ORDER BY at, seq", [rollback_id]
            )
        return [
            Event(
                rollback_id=row["rollback_id"],
                at=when(row["at"]),
                actor=row["actor"],
                kind=row["kind"],
                text=row["text"],
            )
            for row in rows
        ]

    async def audit(self, entry: AuditEntry) -> None:
        """Append an audit record; records are never changed or deleted."""
        async with self._transaction() as conn:
            await self._record(conn, entry, None)

    async def audit_log(self, rollback_id: str | None = None) -> list[AuditEntry]:
        """Return audit records in the order they were written, optionally for one rollback."""
        where, params = ("WHERE rollback_id = ?", [rollback_id]) if rollback_id else ("", [])
        async with self._reading() as conn:
            rows = await conn.execute_fetchall(
                f"SELECT * FROM audit {where} ORDER BY seq",  # noqa: S608
                params,
            )
        return [
            AuditEntry(
                at=when(row["at"]),
                actor=row["actor"],
                action=row["action"],
                rollback_id=row["rollback_id"],
                details=json.loads(row["details"]),
            )
            for row in rows
        ]

    # -- leases ------------------------------------------------------------------------

    async def take_lease(
        self, key: str, rollback_id: str, grant: LeaseGrant, *, takeover_from: str | None = None
    ) -> Lock:
        """Grant the lease with a new token, or return the live lease that holds it."""
        now = utcnow()
        async with self._transaction() as conn:
            held = await self._lease(conn, key)
            if held is not None and held.live(now):
                ours = held.rollback_id == rollback_id and held.owner == takeover_from
                if takeover_from is None or not ours:
                    return held
            return await self._grant(conn, key, rollback_id, grant, now)

    async def renew_lease(self, key: str, rollback_id: str, token: int, ttl: timedelta) -> bool:
        """Extend a lease still held under `token`; False when it was lost."""
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE leases SET expires_at = ? WHERE key = ? AND rollback_id = ? AND token = ?",
                [iso(utcnow() + ttl), key, rollback_id, token],
            )
            return cursor.rowcount == 1

    async def release_lease(self, key: str, rollback_id: str, token: int) -> None:
        """Release a lease still held under `token`; a no-op otherwise."""
        async with self._transaction() as conn:
            await conn.execute(
                "DELETE FROM leases WHERE key = ? AND rollback_id = ? AND token = ?",
                [key, rollback_id, token],
            )

    async def locks(self, *, expired: bool = False) -> list[Lock]:
        """Return the live leases (with `expired`, also those that lapsed)."""
        since = "0000" if expired else iso(utcnow())
        async with self._reading() as conn:
            rows = await conn.execute_fetchall(
                "SELECT * FROM leases WHERE expires_at >= ? ORDER BY key", [since]
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
            clauses.append(f"state IN ({placeholders(wanted)})")
            params.extend(wanted)
        for column, value in (("service", service), ("environment", environment)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        async with self._reading() as conn:
            return await self._select(
                conn, f"{where} ORDER BY created_at DESC, rowid DESC LIMIT ?", [*params, limit]
            )

    async def count_by_state(self) -> dict[State, int]:
        """Return how many rollbacks are in each state; states with none are left out."""
        async with self._reading() as conn:
            rows = await conn.execute_fetchall(
                "SELECT state, COUNT(*) AS n FROM rollbacks GROUP BY state"
            )
        return {State(row["state"]): row["n"] for row in rows}

    # -- inside a transaction ------------------------------------------------------------

    async def _lease(self, conn: aiosqlite.Connection, key: str) -> Lock | None:
        rows = list(await conn.execute_fetchall("SELECT * FROM leases WHERE key = ?", [key]))
        return _lock(rows[0]) if rows else None

    async def _grant(
        self,
        conn: aiosqlite.Connection,
        key: str,
        rollback_id: str,
        grant: LeaseGrant,
        now: datetime,
    ) -> Lock:
        """Hand out the next fencing token and (re)write the lease with it."""
        rows = list(
            await conn.execute_fetchall("UPDATE fences SET token = token + 1 RETURNING token")
        )
        lease = Lock(
            key=key,
            holder=grant.holder,
            rollback_id=rollback_id,
            expires_at=now + grant.ttl,
            owner=grant.owner,
            token=int(rows[0]["token"]),
        )
        await conn.execute(
            "INSERT INTO leases (key, holder, rollback_id, owner, token, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
            "holder = excluded.holder, rollback_id = excluded.rollback_id, "
            "owner = excluded.owner, token = excluded.token, expires_at = excluded.expires_at",
            [key, lease.holder, rollback_id, lease.owner, lease.token, iso(lease.expires_at)],
        )
        return lease

    async def _record(
        self, conn: aiosqlite.Connection, audit: AuditEntry | None, event: Event | None
    ) -> None:
        """Append an audit record and a timeline line, in the caller's transaction."""
        if audit is not None:
            await conn.execute(
                "INSERT INTO audit (at, actor, action, rollback_id, details) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    iso(audit.at),
                    audit.actor,
                    audit.action,
                    audit.rollback_id,
                    json.dumps(audit.details),
                ],
            )
        if event is not None:
            try:
                await conn.execute(
                    "INSERT INTO events (rollback_id, at, actor, kind, text) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [event.rollback_id, iso(event.at), event.actor, event.kind, event.text],
                )
            except aiosqlite.IntegrityError as exc:
                raise KeyError(event.rollback_id) from exc

    async def _update(
        self,
        conn: aiosqlite.Connection,
        rollback_id: str,
        fields: dict[str, Any],
        *,
        open_key: str | None = None,
    ) -> bool:
        """Apply `fields` to one row in a single UPDATE; return whether it matched.

        A new state comes with the open slot it leaves the row in (`open_key`).
        """
        fields.setdefault("updated_at", utcnow())
        values, data, approvers = encode(fields)
        columns = _columns(values)
        sets = [f"{name} = ?" for name in columns]
        params: list[Any] = list(columns.values())
        if "state" in fields:
            sets.append("open_key = ?")
            params.append(open_key)
        if data:
            sets.append(f"data = json_set(data{', ?, json(?)' * len(data)})")
            for name, value in data.items():
                params.extend([f"$.{name}", json.dumps(value)])
        cursor = await conn.execute(
            f"UPDATE rollbacks SET {', '.join(sets)} WHERE id = ?",  # noqa: S608
            [*params, rollback_id],
        )
        if cursor.rowcount != 1:
            return False
        await self._approve(conn, rollback_id, approvers)
        return True

    async def _approve(
        self, conn: aiosqlite.Connection, rollback_id: str, users: Iterable[str]
    ) -> bool:
        """Record approvals that are not there yet; return True when any was new."""
        at = iso(utcnow())
        added = False
        for user in users:
            try:
                cursor = await conn.execute(
                    "INSERT OR IGNORE INTO approvals (rollback_id, user, at) VALUES (?, ?, ?)",
                    [rollback_id, user, at],
                )
            except aiosqlite.IntegrityError as exc:
                raise KeyError(rollback_id) from exc
            added = added or cursor.rowcount == 1
        return added

    async def _approvers(
        self, conn: aiosqlite.Connection, rollback_ids: Collection[str]
    ) -> dict[str, list[str]]:
        """Return the approvers of each rollback, in the order they approved."""
        approvers: dict[str, list[str]] = {}
        if not rollback_ids:
            return approvers
        rows = await conn.execute_fetchall(
            f"SELECT rollback_id, user FROM approvals "  # noqa: S608
            f"WHERE rollback_id IN ({placeholders(rollback_ids)}) ORDER BY seq",
            list(rollback_ids),
        )
        for row in rows:
            approvers.setdefault(row["rollback_id"], []).append(row["user"])
        return approvers

    async def _select(
        self, conn: aiosqlite.Connection, tail: str, params: list[Any]
    ) -> list[Rollback]:
        """Load rollbacks with `SELECT ... {tail}`, approvers included.

        One statement, so that a row and its approvals are read from one snapshot even
        outside a transaction (see `_reading`).
        """
        query = (
            "SELECT rollbacks.*, (SELECT json_group_array(json_array(seq, user)) "  # noqa: S608
            "FROM approvals WHERE approvals.rollback_id = rollbacks.id) AS approvals "
            f"FROM rollbacks {tail}"
        )
        found = list(await conn.execute_fetchall(query, params))
        return [
            to_rollback(
                json.loads(row["data"]),
                {n: row[n] for n in COLUMNS},
                [user for _seq, user in sorted(json.loads(row["approvals"]))],
            )
            for row in found
        ]


def _columns(values: dict[str, Any]) -> dict[str, Any]:
    """Return column values as SQLite stores them: timestamps as sortable ISO text."""
    return {
        name: iso(value) if isinstance(value, datetime) else value for name, value in values.items()
    }


def _holds(lease: Lock | None, rollback_id: str, token: int) -> bool:
    """Return True when `lease` is rollback_id's lease under exactly this token."""
    return lease is not None and lease.rollback_id == rollback_id and lease.token == token
