"""Records the engine keeps: rollbacks, their timeline, audit entries and locks."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class State(StrEnum):
    """States of a rollback (see DESIGN.md)."""

    REQUESTED = "requested"
    SEVERITY_CONFIRMED = "severity_confirmed"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    RUNNING = "running"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    INTERRUPTED = "interrupted"

    @property
    def label(self) -> str:
        """Return the state as words, e.g. "awaiting approval"."""
        return self.value.replace("_", " ")


OPEN_STATES = frozenset(
    {State.REQUESTED, State.SEVERITY_CONFIRMED, State.AWAITING_APPROVAL, State.APPROVED}
)
ACTIVE_STATES = frozenset({State.RUNNING, State.VERIFYING})
FINAL_STATES = frozenset(
    {
        State.SUCCEEDED,
        State.FAILED,
        State.CANCELLED,
        State.REJECTED,
        State.EXPIRED,
        State.INTERRUPTED,
    }
)


class Rollback(BaseModel):
    """One rollback request and everything decided about it."""

    id: str
    service: str
    environment: str
    requested_by: str
    current_version: str
    target_version: str
    state: State = State.REQUESTED
    dry_run: bool = False
    plan: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    issue: str | None = None
    severity: str | None = None
    action: str | None = None
    override_reason: str | None = None
    break_glass_reason: str | None = None
    approved_by: list[str] = Field(default_factory=list)
    error: str | None = None
    target_state: str | None = None
    verification: str | None = None
    channel_id: str | None = None
    message_ts: str | None = None
    thread_ts: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None

    @property
    def lock_key(self) -> str:
        """Return the key of the service+environment lock."""
        return f"{self.service}/{self.environment}"


class Event(BaseModel):
    """One line of a rollback's timeline."""

    rollback_id: str
    at: datetime = Field(default_factory=utcnow)
    actor: str
    kind: str
    text: str


class AuditEntry(BaseModel):
    """One append-only audit record."""

    at: datetime = Field(default_factory=utcnow)
    actor: str
    action: str
    rollback_id: str | None = None
    details: dict[str, str] = Field(default_factory=dict)


class Lock(BaseModel):
    """A held service+environment lock."""

    key: str
    holder: str
    rollback_id: str
    expires_at: datetime
