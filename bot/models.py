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
# Ended after running, without succeeding: what runs is whatever the platform says.
ENDED_BADLY = frozenset({State.FAILED, State.INTERRUPTED})
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


class StepStatus(StrEnum):
    """Where one step of a plan stands."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    NOT_RUN = "not run"


class PreflightItem(BaseModel):
    """One preflight check as the card shows it: pass, warn or fail, with one line of why."""

    name: str
    verdict: str
    why: str


class PlanStep(BaseModel):
    """One step of a rollback plan: a provider or state target and what it will do."""

    name: str
    kind: str
    current: str | None = None
    target: str | None = None
    plan: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    danger: str | None = None
    status: StepStatus = StepStatus.PENDING
    result: str | None = None
    # When the step started and ended (done or failed): its duration in the metrics.
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # The word `/rollback restore` knows the step's target by ("database"), when it keeps
    # backups: a step that ran takes one first.
    restores: str | None = None
    # Preflight: exactly what runs now and what would run (a digest, an ARN, a deployment
    # id), the checks that the target can run, and what changes between the two.
    identity_current: str | None = None
    identity_target: str | None = None
    # The build (commit) of what ran before, where the platform names it apart from
    # the version: a later redeploy of it is the bad version again.
    build_current: str | None = None
    preflight: list[PreflightItem] = Field(default_factory=list)
    changes: list[str] = Field(default_factory=list)
    # What the platform ran once the step was done, when not the target itself (Railway
    # serves a new deployment made from it).
    running: str | None = None
    # How messages show its versions that a platform names by an id nobody remembers:
    # "v1.2.3 (deployment 3f2a…)" for the id (providers.base.Version.shown).
    shown_as: dict[str, str] = Field(default_factory=dict)

    @property
    def heading(self) -> str:
        """Say in a few words what the step changes, e.g. "database 0003_x → 0001_y"."""
        kind = f" ({self.kind})" if self.kind != self.name else ""
        if self.target is None:
            return f"{self.name}{kind}"
        current = self.shown_as.get(self.current or "", self.current or "?")
        return f"{self.name}{kind}: {current} → {self.shown_as.get(self.target, self.target)}"


class FreezeEntry(BaseModel):
    """What a freeze did to one step's platform, kept so that unfreezing puts exactly it back."""

    step: int
    action: str
    saved: dict[str, str] = Field(default_factory=dict)
    # True when the platform acted (a setting changed); False: watched only.
    acted: bool = False
    # The version running when the freeze began: on platforms where a rollback makes a
    # new deployment (Railway), it is not the target's id, and the watch compares with it.
    running: str | None = None


class FreezeState(BaseModel):
    """The bad version kept out of a service environment after a rollback."""

    bad: str
    good: str
    since: datetime
    entries: list[FreezeEntry] = Field(default_factory=list)
    ended_at: datetime | None = None
    ended_by: str | None = None

    @property
    def active(self) -> bool:
        """Return True until someone unfreezes it."""
        return self.ended_at is None


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
    steps: list[PlanStep] = Field(default_factory=list)
    failed_step: int | None = None
    bad_commit: str | None = None
    fix_forward_by: str | None = None
    drill: bool = False
    # A drill's two legs, each from its start to its passed verification.
    drill_back_seconds: float | None = None
    drill_forward_seconds: float | None = None
    detected_at: datetime | None = None
    # When the version rolled back from was deployed, when the platform says.
    released_at: datetime | None = None
    issue: str | None = None
    severity: str | None = None
    action: str | None = None
    override_reason: str | None = None
    break_glass_reason: str | None = None
    approved_by: list[str] = Field(default_factory=list)
    error: str | None = None
    target_state: str | None = None
    verification: str | None = None
    # The incident report's part of the record: the verification table as posted, the
    # live timeline reply in the thread, and which ending the report was uploaded for.
    verification_table: str | None = None
    timeline_ts: str | None = None
    # The run's progress reply, so a replica that takes the run over edits that one.
    progress_ts: str | None = None
    # Set after a verified rollback: the bad version kept out until someone unfreezes.
    freeze: FreezeState | None = None
    reported: str | None = None
    channel_id: str | None = None
    message_ts: str | None = None
    thread_ts: str | None = None
    # The trace (logs' trace_id, OpenTelemetry's) of the request that asked for it.
    trace_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None

    @property
    def multi_step(self) -> bool:
        """Return True when the plan has more than one step."""
        return len(self.steps) > 1

    def shown(self, version: str) -> str:
        """Say a version of this rollback as people know it: "v1.2.3 (deployment 3f2a…)".

        The exact name (what commands and the freeze use) stays in the fields; this is
        for what people read.
        """
        return next((s.shown_as[version] for s in self.steps if version in s.shown_as), version)

    @property
    def shown_current(self) -> str:
        """Say what ran when the rollback was asked for, as people know it."""
        return self.shown(self.current_version)

    @property
    def shown_target(self) -> str:
        """Say the version it rolls back to, as people know it."""
        return self.shown(self.target_version)

    @property
    def shown_running(self) -> str:
        """Say what runs once the rollback is done: the target, or what the platform made of it."""
        running = self.steps[0].running if self.steps else None
        return self.shown(running or self.target_version)

    @property
    def danger(self) -> list[str]:
        """Return what the plan destroys beyond recall, which needs an explicit confirmation."""
        return [step.danger for step in self.steps if step.danger]

    @property
    def preflight_failures(self) -> list[PreflightItem]:
        """Return the preflight checks that failed, in every step still to run."""
        waiting = {StepStatus.PENDING, StepStatus.FAILED}
        return [
            item
            for step in self.steps
            if step.status in waiting
            for item in step.preflight
            if item.verdict == "fail"
        ]

    @property
    def touched_database(self) -> bool:
        """Return True when a database step ran (taking its backup first), wholly or in part."""
        ran = {StepStatus.DONE, StepStatus.FAILED}
        return any(s.restores == "database" and s.status in ran for s in self.steps)

    @property
    def lock_key(self) -> str:
        """Return the key of the service+environment lock."""
        return f"{self.service}/{self.environment}"

    @property
    def open_key(self) -> str | None:
        """Return the one-open-rollback slot this rollback occupies, or None."""
        return None if self.dry_run or self.state in FINAL_STATES else self.lock_key


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
    """A service+environment lock: a lease with an owner, an expiry and a fencing token."""

    key: str
    holder: str
    rollback_id: str
    expires_at: datetime
    # The process that holds it (bot/leases.py), and the number that grows on every grant.
    owner: str = ""
    token: int = 0

    def live(self, now: datetime) -> bool:
        """Return True while the lease has not expired."""
        return self.expires_at >= now
