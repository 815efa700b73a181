"""The SQLite store's scheduled jobs: rows a run claims under a lease, so each runs once."""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from bot.jobs import LIVE_JOB_STATES, Job, JobKind, JobState
from bot.models import utcnow
from bot.store.sqlite_base import SQLiteBase, iso, placeholders, when


class SQLiteJobs(SQLiteBase):
    """Monitoring windows and escalations kept as rows."""

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
                        iso(job.due_at),
                        job.state.value,
                        json.dumps(job.payload),
                        iso(job.created_at),
                        iso(job.updated_at),
                    ],
                )
            except aiosqlite.IntegrityError as exc:
                raise KeyError(job.rollback_id) from exc
            return cursor.rowcount == 1

    async def get_job(self, job_id: str) -> Job | None:
        """Return the job with this id, or None."""
        async with self._reading() as conn:
            rows = list(await conn.execute_fetchall("SELECT * FROM jobs WHERE id = ?", [job_id]))
        return _job(rows[0]) if rows else None

    async def due_jobs(self, now: datetime, limit: int = 50) -> list[Job]:
        """Return pending jobs due by `now` and running ones whose lease has passed."""
        async with self._reading() as conn:
            rows = await conn.execute_fetchall(
                f"SELECT * FROM jobs WHERE {_CLAIMABLE} ORDER BY due_at, id LIMIT ?",  # noqa: S608
                [iso(now), iso(now), limit],
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
                    iso(now + lease),
                    iso(utcnow()),
                    job_id,
                    iso(now),
                    iso(now),
                ],
            )
            if cursor.rowcount != 1:
                return None
            rows = await conn.execute_fetchall("SELECT * FROM jobs WHERE id = ?", [job_id])
            return _job(next(iter(rows)))

    async def claim_due_jobs(self, now: datetime, lease: timedelta, limit: int = 50) -> list[Job]:
        """Claim up to `limit` due jobs at once, in one write transaction."""
        async with self._transaction() as conn:
            rows = list(
                await conn.execute_fetchall(
                    f"SELECT id FROM jobs WHERE {_CLAIMABLE} "  # noqa: S608
                    "ORDER BY due_at, id LIMIT ?",
                    [iso(now), iso(now), limit],
                )
            )
            ids = [row["id"] for row in rows]
            for claimed in ids:
                await conn.execute(
                    "UPDATE jobs SET state = ?, claim = ?, lease_until = ?, "
                    "attempts = attempts + 1, updated_at = ? WHERE id = ?",
                    [
                        JobState.RUNNING.value,
                        secrets.token_hex(8),
                        iso(now + lease),
                        iso(utcnow()),
                        claimed,
                    ],
                )
            if not ids:
                return []
            found = await conn.execute_fetchall(
                f"SELECT * FROM jobs WHERE id IN ({placeholders(ids)}) "  # noqa: S608
                "ORDER BY due_at, id",
                ids,
            )
        return [_job(row) for row in found]

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
        params: list[Any] = [state.value, iso(utcnow())]
        if due_at is not None:
            sets.append("due_at = ?")
            params.append(iso(due_at))
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
                    f"lease_until = NULL, updated_at = ? WHERE id IN ({placeholders(ids)})",
                    [JobState.CANCELLED.value, iso(utcnow()), *ids],
                )
        return [_job(row).model_copy(update={"state": JobState.CANCELLED}) for row in rows]

    async def pending_jobs(self, kinds: Collection[JobKind] | None = None) -> list[Job]:
        """Return the pending and running jobs (of these kinds), soonest due first."""
        where, params = _live_jobs(kinds)
        async with self._reading() as conn:
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
    where = f"state IN ({placeholders(states)})"
    params: list[Any] = list(states)
    if kinds is not None:
        wanted = [JobKind(kind).value for kind in kinds] or [""]
        where += f" AND kind IN ({placeholders(wanted)})"
        params += wanted
    return where, params


def _job(row: aiosqlite.Row) -> Job:
    """Build a Job from its row."""
    return Job(
        id=row["id"],
        rollback_id=row["rollback_id"],
        kind=row["kind"],
        due_at=when(row["due_at"]),
        state=row["state"],
        payload=json.loads(row["payload"]),
        attempts=row["attempts"],
        claim=row["claim"],
        lease_until=when(row["lease_until"]) if row["lease_until"] else None,
        created_at=when(row["created_at"]),
        updated_at=when(row["updated_at"]),
    )
