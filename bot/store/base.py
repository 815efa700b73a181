"""The store interface: everything the engine persists, with atomic compare-and-set."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from bot.errors import Conflict, RollbotError
from bot.jobs import Job, JobKind, JobState
from bot.models import AuditEntry, Event, Lock, Rollback, State
from bot.records import ChecklistMark, Delivery
from bot.states import LockChange


class Refusal(StrEnum):
    """Why the store did not apply a change."""

    STATE = "state"  # the rollback is no longer in a source state: someone got there first
    BUSY = "busy"  # another rollback or a restore holds the service's live lease
    FENCED = "fenced"  # the writer's lease token is stale: the lease was taken over
    TAKEN = "taken"  # another rollback occupies the service+environment's open slot


@dataclass(frozen=True)
class LeaseGrant:
    """Who asks for a lease, for how long."""

    holder: str
    owner: str
    ttl: timedelta


@dataclass(frozen=True)
class Change:
    """One transition applied atomically: state, fields, the lock, audit and timeline."""

    rollback_id: str
    sources: frozenset[State]
    target: State
    lock: LockChange
    # Written in the same transaction: the transition's audit record(s) and timeline lines.
    audit: list[AuditEntry]
    events: list[Event] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    # KEEP and RELEASE by the lease's holder: the fencing token it was granted.
    token: int | None = None
    # TAKE: the grant asked for.
    grant: LeaseGrant | None = None


@dataclass(frozen=True)
class Applied:
    """What `apply` did: the moved rollback and its lease, or why nothing changed."""

    rollback: Rollback | None
    lease: Lock | None = None
    # On success: the state the rollback left.
    previous: State | None = None
    refusal: Refusal | None = None
    # On a refusal: the rollback as it is now, and what blocks it (a lease, a rollback).
    current: Rollback | None = None
    blocker: Lock | Rollback | None = None


class OpenSlotTaken(Exception):
    """Another rollback is open for the same service and environment."""

    def __init__(self, other: Rollback) -> None:
        super().__init__(other.id)
        self.other = other


class Fenced(Conflict):
    """A write carried a lease token that is no longer the live one."""


class StoreUnavailable(RollbotError):
    """The database cannot be reached now (down, restarting, too slow); nothing was written."""


class Lifecycle(Protocol):
    """Opening and closing the store."""

    async def open(self) -> None:
        """Create tables and connections; idempotent."""
        ...

    async def close(self) -> None:
        """Close connections."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers now."""
        ...


class RollbackStore(Protocol):
    """Rollbacks and their transitions, each applied atomically."""

    async def create(
        self, rollback: Rollback, audit: AuditEntry | None = None, event: Event | None = None
    ) -> None:
        """Insert a new rollback with its first audit record and timeline line, atomically.

        Raises OpenSlotTaken when another rollback is open for its service+environment.
        """
        ...

    async def get(self, rollback_id: str) -> Rollback | None:
        """Return the rollback with this id, or None."""
        ...

    async def apply(self, change: Change) -> Applied:
        """Apply one transition: state, fields, lock, audit and timeline in one transaction.

        Refuses (changing nothing) when the state moved on, the lease is someone else's,
        the token is stale, or the open slot is taken. A final state always frees the lock.
        """
        ...

    async def update(
        self, rollback_id: str, *, fence: tuple[str, int] | None = None, **fields: Any
    ) -> Rollback:
        """Set fields that are not the state; with `fence` (key, token), only under that lease.

        Raises Fenced when the lease named is no longer the live one.
        """
        ...

    async def add_approval(
        self, rollback_id: str, user: str, audit: AuditEntry, event: Event
    ) -> list[str] | None:
        """Record a user's approval while the rollback awaits it, with its audit and timeline.

        Returns all approvers in order when this approval is new; None when the rollback
        no longer awaits approval or the user had approved already (nothing is written).
        """
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


class RecordStore(Protocol):
    """The append-only records: audit log, timeline and checklist marks."""

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

    async def add_checklist_mark(self, mark: ChecklistMark) -> None:
        """Append a person's tick or untick; marks are never changed or deleted."""
        ...

    async def checklist_marks(self, rollback_id: str) -> list[ChecklistMark]:
        """Return a rollback's checklist marks, oldest first."""
        ...


class LeaseStore(Protocol):
    """Service locks as fenced leases."""

    async def take_lease(
        self, key: str, rollback_id: str, grant: LeaseGrant, *, takeover_from: str | None = None
    ) -> Lock:
        """Grant the lease with a new token, or return the live lease that holds it.

        Granted when none is held, the held one expired, or it is `rollback_id`'s own
        lease held by `takeover_from` (an owner known to be dead).
        """
        ...

    async def renew_lease(self, key: str, rollback_id: str, token: int, ttl: timedelta) -> bool:
        """Extend a lease still held under `token`; False when it was lost."""
        ...

    async def release_lease(self, key: str, rollback_id: str, token: int) -> None:
        """Release a lease still held under `token`; a no-op otherwise."""
        ...

    async def locks(self, *, expired: bool = False) -> list[Lock]:
        """Return the live leases (with `expired`, also those that lapsed)."""
        ...


class DeliveryStore(Protocol):
    """What is sent to Slack once: deliveries claimed once, and Slack requests seen."""

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

    async def claim_request(self, key: str, now: datetime, keep: timedelta) -> bool:
        """Claim a Slack request by its idempotency key; False when it was handled already."""
        ...


class JobStore(Protocol):
    """Scheduled jobs (monitoring windows, escalations), each run claimed once."""

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

    async def claim_due_jobs(self, now: datetime, lease: timedelta, limit: int = 50) -> list[Job]:
        """Claim up to `limit` due jobs at once (as claim_job does each), soonest due first.

        Replicas claiming together get disjoint sets: a row one is claiming is skipped.
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


class Store(Lifecycle, RollbackStore, RecordStore, LeaseStore, DeliveryStore, JobStore, Protocol):
    """Everything the engine persists; a module asks only for the role it uses."""
