"""Scheduled work kept in the store, so it survives a restart: what a job is."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from bot.models import utcnow

Clock = Callable[[], datetime]
"""Where scheduled work reads the time: a callable returning an aware UTC datetime."""


class JobKind(StrEnum):
    """What a job does; the scheduler finds its handler by this name."""

    MONITOR = "monitor"
    ESCALATE = "escalate"
    FREEZE_WATCH = "freeze_watch"


class JobState(StrEnum):
    """Where a job stands."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


LIVE_JOB_STATES = frozenset({JobState.PENDING, JobState.RUNNING})


def job_id(kind: JobKind, rollback_id: str) -> str:
    """Return the id of a rollback's one job of a kind, so scheduling it twice is a no-op."""
    return f"{kind.value}:{rollback_id}"


class Job(BaseModel):
    """One piece of scheduled work for a rollback."""

    id: str
    rollback_id: str
    kind: JobKind
    due_at: datetime
    state: JobState = JobState.PENDING
    payload: dict[str, Any] = Field(default_factory=dict)
    attempts: int = Field(default=0, description="Runs started since the last one that worked.")
    claim: str | None = Field(default=None, description="Token of the run that holds the job.")
    lease_until: datetime | None = Field(
        default=None, description="A running job whose lease has passed was orphaned by a crash."
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
