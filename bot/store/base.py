"""The store interface: everything the engine persists, with atomic compare-and-set."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.jobs import Job, JobKind, JobState
from bot.models import AuditEntry, Event, Lock, Rollback, State
from bot.records import ChecklistMark, Delivery


class Store(Protocol):
    """Persistence of rollbacks, timelines, approvals, locks and the audit log."""

    async def open(self) -> None:
        """Create tables and connections; idempotent."""
        ...

    async def close(self) -> None:
        """Close connections."""
        ...

    async def create(self, rollback: Rollback) -> None:
        """Insert a new rollback; its id must be new."""
        ...

    async def get(self, rollback_id: str) -> Rollback | None:
        """Return the rollback with this id, or None."""
        ...

    async def transition(
        self, rollback_id: str, expected: Collection[State], new: State, **fields: Any
    ) -> Rollback | None:
        """Atomically move from one of `expected` to `new`, setting `fields`.

        Returns the updated rollback, or None when its state was not in `expected`
        (someone else got there first). Bumps `updated_at`.
        """
        ...

    async def update(self, rollback_id: str, **fields: Any) -> Rollback:
        """Set fields that are not the state (Slack coordinates, severity, error)."""
        ...

    async def add_approval(self, rollback_id: str, user: str) -> list[str]:
        """Record one approval per user, idempotently; return all approvers in order."""
        ...

    async def add_event(self, event: Event) -> None:
        """Append a line to a rollback's timeline."""
        ...

    async def events(self, rollback_id: str) -> list[Event]:
        """Return a rollback's timeline, oldest first."""
        ...

    async def audit(self, entry: AuditEntry) -> None:
        """Append an audit record; records are never changed or deleted."""
        ...

    async def audit_log(self, rollback_id: str | None = None) -> list[AuditEntry]:
        """Return audit records, oldest first, optionally for one rollback."""
        ...

    async def acquire_lock(self, key: str, holder: str, rollback_id: str, ttl: timedelta) -> Lock:
        """Take the lock or return who holds it (compare `holder`/`rollback_id`).

        An expired lock is taken over. Re-acquiring one's own lock refreshes its TTL.
        """
        ...

    async def release_lock(self, key: str, rollback_id: str) -> None:
        """Release the lock if this rollback holds it."""
        ...

    async def locks(self) -> list[Lock]:
        """Return the unexpired locks."""
        ...

    async def find(
        self,
        *,
        states: Collection[State] | None = None,
        service: str | None = None,
        environment: str | None = None,
        limit: int = 50,
    ) -> list[Rollback]:
        """Return rollbacks matching the filters, newest first."""
        ...

    async def count_by_state(self) -> dict[State, int]:
        """Return how many rollbacks are in each state; states with none are left out."""
        ...

    # -- checklists and one-time deliveries (notifications, the checklist message) ------

    async def add_checklist_mark(self, mark: ChecklistMark) -> None:
        """Append a person's tick or untick; marks are never changed or deleted."""
        ...

    async def checklist_marks(self, rollback_id: str) -> list[ChecklistMark]:
        """Return a rollback's checklist marks, oldest first."""
        ...

    async def claim_delivery(self, delivery: Delivery) -> bool:
        """Claim (rollback_id, key) for this delivery; False when it was claimed already."""
        ...

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
        ...

    async def delivery(self, rollback_id: str, key: str) -> Delivery | None:
        """Return a claimed delivery, or None."""
        ...

    async def release_delivery(self, rollback_id: str, key: str) -> None:
        """Drop a claim whose work failed, so it can be tried again."""
        ...

    # -- scheduled jobs (monitoring windows, escalations) ------------------------------

    async def schedule_job(self, job: Job) -> bool:
        """Insert a job unless one with its id exists (in any state); return True if inserted."""
        ...

    async def get_job(self, job_id: str) -> Job | None:
        """Return the job with this id, or None."""
        ...

    async def due_jobs(self, now: datetime, limit: int = 50) -> list[Job]:
        """Return pending jobs due by `now` and running ones whose lease has passed, by due time."""
        ...

    async def claim_job(self, job_id: str, now: datetime, lease: timedelta) -> Job | None:
        """Atomically take a due job (or one whose lease has passed) for one run.

        Sets it running with a new claim token and `lease_until = now + lease`, counts
        the attempt, and returns it; None when it is not due or someone else holds it.
        """
        ...

    async def finish_job(
        self,
        claimed: Job,
        state: JobState,
        *,
        due_at: datetime | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Job | None:
        """End a run: leave the job `state` (pending again at `due_at`, done or failed).

        Only the run holding the claim can do this, and only while the job is running
        (a job cancelled meanwhile stays cancelled): otherwise returns None. A new
        `payload` means the run did its work, so the attempts count starts again at 0.
        """
        ...

    async def cancel_jobs(
        self, rollback_id: str, kinds: Collection[JobKind] | None = None
    ) -> list[Job]:
        """Cancel a rollback's pending and running jobs (of these kinds); return those cancelled."""
        ...

    async def pending_jobs(self, kinds: Collection[JobKind] | None = None) -> list[Job]:
        """Return the pending and running jobs (of these kinds), soonest due first."""
        ...
