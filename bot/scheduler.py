"""Runs the store's due jobs: each once (claimed with a compare-and-set), under a timeout.

A job's handler returns `Again(due_at, payload)` to run again later, or `Done(payload)`
(or None) when the job is done. A handler that raises is retried later, `max_attempts`
times in a row at most; then the job is marked failed. Work left behind by a process that
died is taken over once its lease passes; a run cut short by a clean stop is handed back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from bot.jobs import Clock, Job, JobKind, JobState
from bot.models import utcnow
from bot.store.base import JobStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Again:
    """Run the job again at `due_at`, keeping `payload` for that run."""

    due_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Done:
    """The job is done; keep `payload` as its last word (status, tests, reports)."""

    payload: dict[str, Any] = field(default_factory=dict)


JobHandler = Callable[[Job, datetime], Awaitable[Again | Done | None]]
"""Runs one job at a time `now`; returns Again to run it later, Done or None when done."""

# One run of a job is short: a round of health checks (each bounded by its own timeout,
# once more to confirm a change) and a Slack post or two. The lease outlives the timeout
# so a live run is never taken over, only one whose process died.
JOB_TIMEOUT_SECONDS = 120.0
LEASE = timedelta(seconds=JOB_TIMEOUT_SECONDS * 2)
# A run cut short by a stop gets this long to finish before it is handed back.
STOP_GRACE_SECONDS = 5.0


class Scheduler:
    """Claims and runs due jobs with the handler registered for their kind."""

    def __init__(
        self,
        store: JobStore,
        handlers: Mapping[JobKind, JobHandler],
        *,
        clock: Clock = utcnow,
        timeout_seconds: float = JOB_TIMEOUT_SECONDS,
        lease: timedelta = LEASE,
        retry_seconds: float = 30.0,
        max_attempts: int = 5,
    ) -> None:
        self.store = store
        self.handlers = dict(handlers)
        self.clock = clock
        self.timeout_seconds = timeout_seconds
        self.lease = lease
        self.retry_seconds = retry_seconds
        self.max_attempts = max_attempts

    async def run_due(self) -> int:
        """Run every job due now (late ones included), concurrently; return how many ran here."""
        due = await self.store.claim_due_jobs(self.clock(), self.lease)
        await asyncio.gather(*(self._run(job) for job in due))
        return len(due)

    async def run_job(self, job_id: str) -> bool:
        """Claim one job and run it; False when it is not due or another run holds it."""
        job = await self.store.claim_job(job_id, self.clock(), self.lease)
        if job is None:
            return False
        await self._run(job)
        return True

    async def _run(self, job: Job) -> None:
        """Run one claimed job with its kind's handler, and record how it ended."""
        handler = self.handlers.get(job.kind)
        if handler is None:
            log.error("job has no handler", job_id=job.id, kind=job.kind.value)
            await self.store.finish_job(job, JobState.FAILED)
            return
        started = time.monotonic()
        try:
            outcome = await asyncio.wait_for(handler(job, self.clock()), self.timeout_seconds)
        except asyncio.CancelledError:
            # A stop cut this run short: hand the job back so the next start runs it.
            await asyncio.shield(self.store.finish_job(job, JobState.PENDING))
            raise
        except Exception as exc:
            await self._failed(job, exc, time.monotonic() - started)
            return
        if isinstance(outcome, Again):
            await self.store.finish_job(
                job, JobState.PENDING, due_at=outcome.due_at, payload=outcome.payload
            )
        else:
            payload = outcome.payload if outcome else None
            await self.store.finish_job(job, JobState.DONE, payload=payload)
        log.info(
            "job ran",
            job_id=job.id,
            kind=job.kind.value,
            rollback_id=job.rollback_id,
            again=outcome.due_at.isoformat() if isinstance(outcome, Again) else None,
            duration_s=round(time.monotonic() - started, 3),
        )

    async def _failed(self, job: Job, exc: Exception, seconds: float) -> None:
        """Retry a job that raised later, or give up after `max_attempts` in a row."""
        give_up = job.attempts >= self.max_attempts
        log.warning(
            "job failed",
            job_id=job.id,
            kind=job.kind.value,
            rollback_id=job.rollback_id,
            attempts=job.attempts,
            gave_up=give_up,
            error=type(exc).__name__,
            detail=str(exc)[:200],
            duration_s=round(seconds, 3),
        )
        if give_up:
            await self.store.finish_job(job, JobState.FAILED)
            return
        later = self.clock() + timedelta(seconds=self.retry_seconds * job.attempts)
        await self.store.finish_job(job, JobState.PENDING, due_at=later)

    async def run_every(
        self, tick_seconds: float, stop: asyncio.Event, grace_seconds: float = STOP_GRACE_SECONDS
    ) -> None:
        """Run due jobs now (so a restart resumes late work), then every tick until `stop`.

        Runs still going `grace_seconds` after `stop` are cut short and handed back.
        """
        while not stop.is_set():
            try:
                await _until_stopped(self.run_due(), stop, grace_seconds)
            except Exception:
                # The store being briefly unavailable must not end scheduled work for good.
                log.exception("scheduler tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick_seconds)


async def _until_stopped(work: Awaitable[int], stop: asyncio.Event, grace: float) -> None:
    """Await `work`; once `stop` is set, give it `grace` seconds, then cancel it."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=grace)
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        stopper.cancel()
