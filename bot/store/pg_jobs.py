"""The PostgreSQL store's scheduled jobs: due rows claimed with FOR UPDATE SKIP LOCKED."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from bot.jobs import LIVE_JOB_STATES, Job, JobKind, JobState
from bot.models import utcnow
from bot.store.pg_base import PgBase
from bot.store.rows import aware

# A job a run may take: pending and due, or running under a lease that has passed (its
# process died). Parameter $1: now.
_CLAIMABLE = "((state = 'pending' AND due_at <= $1) OR (state = 'running' AND lease_until < $1))"


class PgJobs(PgBase):
    """Monitoring windows and escalations kept as rows every replica can claim."""

    async def schedule_job(self, job: Job) -> bool:
        """Insert a job unless one with its id exists (in any state); return True if inserted."""
        async with self._transaction() as conn:
            try:
                inserted = await conn.fetchval(
                    "INSERT INTO jobs (id, rollback_id, kind, due_at, state, payload, attempts, "
                    "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6::jsonb, 0, $7, $8) "
                    "ON CONFLICT (id) DO NOTHING RETURNING true",
                    job.id,
                    job.rollback_id,
                    job.kind.value,
                    aware(job.due_at),
                    job.state.value,
                    json.dumps(job.payload),
                    aware(job.created_at),
                    aware(job.updated_at),
                )
            except asyncpg.ForeignKeyViolationError as exc:
                raise KeyError(job.rollback_id) from exc
            return bool(inserted)

    async def get_job(self, job_id: str) -> Job | None:
        """Return the job with this id, or None."""
        async with self._transaction(readonly=True) as conn:
            row = await conn.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
        return _job(row) if row else None

    async def due_jobs(self, now: datetime, limit: int = 50) -> list[Job]:
        """Return pending jobs due by `now` and running ones whose lease has passed."""
        async with self._transaction(readonly=True) as conn:
            rows = await conn.fetch(
                f"SELECT * FROM jobs WHERE {_CLAIMABLE} ORDER BY due_at, id LIMIT $2",  # noqa: S608
                aware(now),
                limit,
            )
        return [_job(row) for row in rows]

    async def claim_job(self, job_id: str, now: datetime, lease: timedelta) -> Job | None:
        """Atomically take a due job (or one whose lease has passed) for one run."""
        async with self._transaction() as conn:
            row = await conn.fetchrow(
                "UPDATE jobs SET state = 'running', claim = gen_random_uuid()::text, "  # noqa: S608
                "lease_until = $2, attempts = attempts + 1, updated_at = $3 "
                f"WHERE id = $4 AND {_CLAIMABLE} RETURNING *",
                aware(now),
                aware(now) + lease,
                utcnow(),
                job_id,
            )
        return _job(row) if row else None

    async def claim_due_jobs(self, now: datetime, lease: timedelta, limit: int = 50) -> list[Job]:
        """Claim up to `limit` due jobs at once; rows another replica is claiming are skipped."""
        async with self._transaction() as conn:
            rows = await conn.fetch(
                "WITH due AS (SELECT id FROM jobs "  # noqa: S608
                f"WHERE {_CLAIMABLE} ORDER BY due_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) "
                "UPDATE jobs SET state = 'running', claim = gen_random_uuid()::text, "
                "lease_until = $2, attempts = attempts + 1, updated_at = $3 "
                "FROM due WHERE jobs.id = due.id RETURNING jobs.*",
                aware(now),
                aware(now) + lease,
                utcnow(),
                limit,
            )
        return sorted((_job(row) for row in rows), key=lambda job: (job.due_at, job.id))

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
        async with self._transaction() as conn:
            row = await conn.fetchrow(
                "UPDATE jobs SET state = $1, claim = NULL, lease_until = NULL, updated_at = $2, "
                "due_at = COALESCE($3, due_at), payload = COALESCE($4::jsonb, payload), "
                "attempts = CASE WHEN $4::jsonb IS NULL THEN attempts ELSE 0 END "
                "WHERE id = $5 AND state = 'running' AND claim = $6 RETURNING *",
                state.value,
                utcnow(),
                aware(due_at) if due_at else None,
                json.dumps(payload) if payload is not None else None,
                claimed.id,
                claimed.claim,
            )
        return _job(row) if row else None

    async def cancel_jobs(
        self, rollback_id: str, kinds: Collection[JobKind] | None = None
    ) -> list[Job]:
        """Cancel a rollback's pending and running jobs (of these kinds); return those cancelled."""
        wanted = None if kinds is None else [JobKind(kind).value for kind in kinds]
        async with self._transaction() as conn:
            rows = await conn.fetch(
                "UPDATE jobs SET state = 'cancelled', claim = NULL, lease_until = NULL, "
                "updated_at = $1 WHERE rollback_id = $2 AND state = ANY($3::text[]) "
                "AND ($4::text[] IS NULL OR kind = ANY($4::text[])) RETURNING *",
                utcnow(),
                rollback_id,
                [state.value for state in LIVE_JOB_STATES],
                wanted,
            )
        return sorted((_job(row) for row in rows), key=lambda job: (job.due_at, job.id))

    async def pending_jobs(self, kinds: Collection[JobKind] | None = None) -> list[Job]:
        """Return the pending and running jobs (of these kinds), soonest due first."""
        wanted = None if kinds is None else [JobKind(kind).value for kind in kinds]
        async with self._transaction(readonly=True) as conn:
            rows = await conn.fetch(
                "SELECT * FROM jobs WHERE state = ANY($1::text[]) "
                "AND ($2::text[] IS NULL OR kind = ANY($2::text[])) ORDER BY due_at, id",
                [state.value for state in LIVE_JOB_STATES],
                wanted,
            )
        return [_job(row) for row in rows]


def _job(row: asyncpg.Record) -> Job:
    """Build a Job from its row."""
    return Job.model_validate({**dict(row), "payload": json.loads(row["payload"])})
