"""The shared store: PostgreSQL through asyncpg, for several replicas of rollbot."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

import asyncpg

from bot.models import FINAL_STATES, AuditEntry, Event, Rollback, State, utcnow
from bot.states import LockChange
from bot.store.base import Applied, Change, Fenced, OpenSlotTaken, Refusal
from bot.store.pg_jobs import PgJobs
from bot.store.pg_leases import PgLeases, holds
from bot.store.pg_records import PgRecords
from bot.store.rows import COLUMNS, aware, encode, json_body, to_rollback

# Every read of a rollback brings its approvers, in the order they approved.
_SELECT = (
    "SELECT r.*, r.data::text AS body, ARRAY(SELECT a.approver FROM approvals a "
    "WHERE a.rollback_id = r.id ORDER BY a.seq) AS approvers FROM rollbacks r"
)


class _Refused(Exception):
    """Leaves a transaction (rolling it back) with the refusal to return."""

    def __init__(self, applied: Applied) -> None:
        super().__init__(applied.refusal)
        self.applied = applied


class PostgresStore(PgJobs, PgRecords, PgLeases):
    """The Store on PostgreSQL; every replica of rollbot shares it."""

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def create(
        self, rollback: Rollback, audit: AuditEntry | None = None, event: Event | None = None
    ) -> None:
        """Insert a new rollback with its first records; refuse a second open one."""
        try:
            async with self._transaction() as conn:
                await conn.execute(
                    f"INSERT INTO rollbacks ({', '.join(COLUMNS)}, open_key, data) "  # noqa: S608
                    f"VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))}, "
                    f"${len(COLUMNS) + 1}, ${len(COLUMNS) + 2}::jsonb)",
                    *(_value(getattr(rollback, name)) for name in COLUMNS),
                    rollback.open_key,
                    json.dumps(json_body(rollback)),
                )
                await self._approve(conn, rollback.id, rollback.approved_by)
                await self._record(conn, audit, event)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "rollbacks_open":
                raise ValueError(f"rollback {rollback.id!r} already exists") from None
            other = await self._open_in(rollback.open_key)
            if other is None:  # closed meanwhile: the caller may simply try again
                raise ValueError(f"the open slot of {rollback.lock_key} was busy") from None
            raise OpenSlotTaken(other) from None

    async def get(self, rollback_id: str) -> Rollback | None:
        """Return the rollback with this id, or None."""
        async with self._transaction(readonly=True) as conn:
            found = await self._select(conn, "WHERE r.id = $1", rollback_id)
        return found[0] if found else None

    async def apply(self, change: Change) -> Applied:
        """Apply one transition: state, fields, lock, audit and timeline in one transaction.

        The rollback's row is locked first, then its lease's, in that order everywhere.
        The state is written by a conditional UPDATE (state = ANY(sources)); the lease by
        a conditional upsert; the open slot is a unique constraint.
        """
        if {"state", "id", "open_key"} & set(change.fields):
            raise ValueError("a change sets the state itself and never changes the id")
        if change.lock is LockChange.KEEP and change.token is None:
            raise ValueError("keeping the lock needs the lease's token")
        if change.lock is LockChange.TAKE and change.grant is None:
            raise ValueError("taking the lock needs a grant")
        fields: dict[str, Any] = {**change.fields, "state": change.target}
        now = utcnow()
        if change.target in FINAL_STATES:
            fields.setdefault("finished_at", now)
        values, data, approvers = encode({"updated_at": now, **fields})
        try:
            async with self._transaction() as conn:
                return await self._apply(conn, change, values, data, approvers, now)
        except _Refused as refused:
            return refused.applied
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "rollbacks_open":
                raise
            current = await self.get(change.rollback_id)
            blocker = None if current is None else await self._open_in(current.lock_key)
            return Applied(None, refusal=Refusal.TAKEN, current=current, blocker=blocker)

    async def _apply(
        self,
        conn: asyncpg.Connection,
        change: Change,
        values: dict[str, Any],
        data: dict[str, Any],
        approvers: list[str],
        now: datetime,
    ) -> Applied:
        found = await self._select(conn, "WHERE r.id = $1 FOR UPDATE OF r", change.rollback_id)
        if not found:
            raise KeyError(change.rollback_id)
        rb = found[0]
        if rb.state not in change.sources:
            return Applied(None, refusal=Refusal.STATE, current=rb)
        held = await self._lease(conn, rb.lock_key, lock=True)
        if change.token is not None and not holds(held, rb.id, change.token):
            return Applied(None, refusal=Refusal.FENCED, current=rb, blocker=held)
        lease = held if held is not None and held.rollback_id == rb.id else None
        if change.lock is LockChange.TAKE:
            assert change.grant is not None
            lease = await self._grant(
                conn,
                rb.lock_key,
                rb.id,
                change.grant,
                now,
                "leases.rollback_id = $3 OR leases.expires_at < $6",
            )
            if lease is None:
                return Applied(None, refusal=Refusal.BUSY, current=rb, blocker=held)
        moved = rb.model_copy(update={"state": change.target})
        query, params = _update(
            values,
            data,
            "id = $1 AND state = ANY($2::text[])",
            rb.id,
            [state.value for state in change.sources],
            open_key=moved.open_key,
        )
        row = await conn.fetchrow(query, *params)
        if row is None:  # the row is locked: only a bug could get here
            raise RuntimeError(f"rollback {rb.id} changed under its row lock")
        await self._approve(conn, rb.id, approvers)
        if change.lock is LockChange.RELEASE or change.target in FINAL_STATES:
            await conn.execute(
                "DELETE FROM leases WHERE key = $1 AND rollback_id = $2", rb.lock_key, rb.id
            )
            lease = None
        # Dated when written, not when built, like every transition record.
        for entry in change.audit:
            await self._record(conn, entry.model_copy(update={"at": now}), None)
        for event in change.events:
            await self._record(conn, None, event.model_copy(update={"at": now}))
        moved = (await self._select(conn, "WHERE r.id = $1", rb.id))[0]
        return Applied(moved, lease, previous=rb.state)

    async def update(
        self, rollback_id: str, *, fence: tuple[str, int] | None = None, **fields: Any
    ) -> Rollback:
        """Set fields that are not the state; with `fence`, only under that live lease."""
        if {"state", "id", "open_key"} & set(fields):
            raise ValueError("update never changes state or id: apply a transition")
        values, data, approvers = encode({"updated_at": utcnow(), **fields})
        async with self._transaction() as conn:
            exists = await conn.fetchval(
                "SELECT true FROM rollbacks WHERE id = $1 FOR UPDATE", rollback_id
            )
            if not exists:
                raise KeyError(rollback_id)
            if fence is not None:
                key, token = fence
                if not holds(await self._lease(conn, key, lock=True), rollback_id, token):
                    raise Fenced(
                        f"Rollback {rollback_id} was taken over by another rollbot process; "
                        "this one stops here."
                    )
            query, params = _update(values, data, "id = $1", rollback_id, open_key=None)
            await conn.execute(query, *params)
            await self._approve(conn, rollback_id, approvers)
            return (await self._select(conn, "WHERE r.id = $1", rollback_id))[0]

    async def add_approval(
        self, rollback_id: str, user: str, audit: AuditEntry, event: Event
    ) -> list[str] | None:
        """Record a new approval while the rollback awaits it; None when nothing was written."""
        async with self._transaction() as conn:
            state = await conn.fetchval(
                "SELECT state FROM rollbacks WHERE id = $1 FOR UPDATE", rollback_id
            )
            if state is None:
                raise KeyError(rollback_id)
            if state != State.AWAITING_APPROVAL.value:
                return None
            if not await self._approve(conn, rollback_id, [user]):
                return None
            await self._record(conn, audit, event)
            found = await self._select(conn, "WHERE r.id = $1", rollback_id)
            return found[0].approved_by

    async def add_event(self, event: Event) -> None:
        """Append a line to a rollback's timeline."""
        async with self._transaction() as conn:
            await self._record(conn, None, event)

    async def events(self, rollback_id: str) -> list[Event]:
        """Return a rollback's timeline, oldest first."""
        async with self._transaction(readonly=True) as conn:
            rows = await conn.fetch(
                "SELECT rollback_id, at, actor, kind, text FROM events "
                "WHERE rollback_id = $1 ORDER BY at, seq",
                rollback_id,
            )
        return [Event.model_validate(dict(row)) for row in rows]

    async def audit(self, entry: AuditEntry) -> None:
        """Append an audit record; records are never changed or deleted."""
        async with self._transaction() as conn:
            await self._record(conn, entry, None)

    async def audit_log(self, rollback_id: str | None = None) -> list[AuditEntry]:
        """Return audit records in the order they were written, optionally for one rollback."""
        async with self._transaction(readonly=True) as conn:
            rows = await conn.fetch(
                "SELECT at, actor, action, rollback_id, details::text AS details FROM audit "
                "WHERE $1::text IS NULL OR rollback_id = $1 ORDER BY seq",
                rollback_id,
            )
        return [
            AuditEntry.model_validate({**dict(row), "details": json.loads(row["details"])})
            for row in rows
        ]

    async def find(
        self,
        *,
        states: Collection[State] | None = None,
        service: str | None = None,
        environment: str | None = None,
        limit: int = 50,
    ) -> list[Rollback]:
        """Return rollbacks matching the filters, newest first."""
        wanted = None if states is None else [State(state).value for state in states]
        async with self._transaction(readonly=True) as conn:
            return await self._select(
                conn,
                "WHERE ($1::text[] IS NULL OR r.state = ANY($1::text[])) "
                "AND ($2::text IS NULL OR r.service = $2) "
                "AND ($3::text IS NULL OR r.environment = $3) "
                "ORDER BY r.created_at DESC, r.seq DESC LIMIT $4",
                wanted,
                service,
                environment,
                limit,
            )

    async def count_by_state(self) -> dict[State, int]:
        """Return how many rollbacks are in each state; states with none are left out."""
        async with self._transaction(readonly=True) as conn:
            rows = await conn.fetch("SELECT state, count(*) AS n FROM rollbacks GROUP BY state")
        return {State(row["state"]): row["n"] for row in rows}

    # -- inside a transaction ------------------------------------------------------------

    async def _open_in(self, open_key: str | None) -> Rollback | None:
        """Return the rollback that holds an open slot now, if any."""
        async with self._transaction(readonly=True) as conn:
            found = await self._select(conn, "WHERE r.open_key = $1", open_key)
        return found[0] if found else None

    async def _record(
        self, conn: asyncpg.Connection, audit: AuditEntry | None, event: Event | None
    ) -> None:
        """Append an audit record and a timeline line, in the caller's transaction."""
        if audit is not None:
            await conn.execute(
                "INSERT INTO audit (at, actor, action, rollback_id, details) "
                "VALUES ($1, $2, $3, $4, $5::jsonb)",
                aware(audit.at),
                audit.actor,
                audit.action,
                audit.rollback_id,
                json.dumps(audit.details),
            )
        if event is not None:
            try:
                await conn.execute(
                    "INSERT INTO events (rollback_id, at, actor, kind, text) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    event.rollback_id,
                    aware(event.at),
                    event.actor,
                    event.kind,
                    event.text,
                )
            except asyncpg.ForeignKeyViolationError as exc:
                raise KeyError(event.rollback_id) from exc

    async def _approve(
        self, conn: asyncpg.Connection, rollback_id: str, users: Iterable[str]
    ) -> bool:
        """Record approvals that are not there yet; return True when any was new."""
        added = False
        for user in users:
            try:
                new = await conn.fetchval(
                    "INSERT INTO approvals (rollback_id, approver, at) VALUES ($1, $2, $3) "
                    "ON CONFLICT (rollback_id, approver) DO NOTHING RETURNING true",
                    rollback_id,
                    user,
                    utcnow(),
                )
            except asyncpg.ForeignKeyViolationError as exc:
                raise KeyError(rollback_id) from exc
            added = added or bool(new)
        return added

    async def _select(self, conn: asyncpg.Connection, tail: str, *params: Any) -> list[Rollback]:
        """Load rollbacks with `SELECT ... {tail}`, approvers included."""
        rows = await conn.fetch(f"{_SELECT} {tail}", *params)
        return [
            to_rollback(
                json.loads(row["body"]),
                {name: row[name] for name in COLUMNS},
                list(row["approvers"]),
            )
            for row in rows
        ]


def _update(
    values: dict[str, Any], data: dict[str, Any], where: str, *where_params: Any, open_key: Any
) -> tuple[str, list[Any]]:
    """Return an UPDATE of one rollback by `where` (which uses $1.. for `where_params`).

    Setting the state also sets the open slot the rollback is left in (`open_key`).
    """
    params = list(where_params)
    sets: list[str] = []
    if "state" in values:
        params.append(open_key)
        sets.append(f"open_key = ${len(params)}")
    for name, value in values.items():
        params.append(_value(value))
        sets.append(f"{name} = ${len(params)}")
    if data:
        params.append(json.dumps(data))
        sets.append(f"data = data || ${len(params)}::jsonb")
    query = f"UPDATE rollbacks SET {', '.join(sets)} WHERE {where} RETURNING id"  # noqa: S608
    return query, params


def _value(value: Any) -> Any:
    """Return a column value as asyncpg binds it: timestamps with their timezone."""
    return aware(value) if isinstance(value, datetime) else value
