"""The guide's timeline of a rollback, built from its record and its events.

The guide's incident report has four milestones (issue detected, rollback initiated,
rollback completed, service restored); between them come every decision and every
provider step the engine recorded, each with who did it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bot.models import Event, Rollback

ROLLBOT = "rollbot"
STEP = "step"
# Events whose detail is what a person typed (a reason), shown inert wherever it goes.
TYPED = frozenset({"override", "break_glass"})


class Milestone(StrEnum):
    """The guide's four lines of an incident timeline."""

    DETECTED = "Issue detected"
    INITIATED = "Rollback initiated"
    COMPLETED = "Rollback completed"
    RESTORED = "Service restored"


@dataclass(frozen=True)
class Entry:
    """One line of the timeline: when, who, what happened in the guide's words, and how."""

    at: datetime
    actor: str
    kind: str
    what: str
    detail: str | None = None
    milestone: bool = False
    typed: bool = False

    @property
    def is_step(self) -> bool:
        """Return True for a provider step (the lines a long rollback has many of)."""
        return self.kind == STEP


@dataclass(frozen=True)
class Timeline:
    """A rollback's timeline in time order, with the milestones the durations run between."""

    entries: tuple[Entry, ...]
    detected_at: datetime
    initiated_at: datetime
    completed_at: datetime | None = None
    restored_at: datetime | None = None

    @property
    def detected_to_initiated(self) -> timedelta:
        """Return how long it took from seeing the issue to asking for the rollback."""
        return max(self.initiated_at - self.detected_at, timedelta(0))

    @property
    def initiated_to_completed(self) -> timedelta | None:
        """Return how long the rollback took from the request to its last step."""
        if self.completed_at is None:
            return None
        return self.completed_at - self.initiated_at

    @property
    def detected_to_restored(self) -> timedelta | None:
        """Return how long the service was known to be bad (None until it is restored)."""
        if self.restored_at is None:
            return None
        return self.restored_at - self.detected_at

    def clock(self, at: datetime) -> str:
        """Return HH:MM in UTC, with the date too when it is not the day of detection."""
        at = at.astimezone(UTC)
        if at.date() != self.detected_at.astimezone(UTC).date():
            return at.strftime("%m-%d %H:%M")
        return at.strftime("%H:%M")


def build(rollback: Rollback, events: Sequence[Event]) -> Timeline:
    """Build the timeline of a rollback from its events (oldest first, as the store keeps them)."""
    ordered = sorted(events, key=lambda e: e.at)  # stable: the store's order breaks ties
    requested = next((e for e in ordered if e.kind == "requested"), None)
    initiated_at = requested.at if requested else rollback.created_at
    detected_at = min(rollback.detected_at or initiated_at, initiated_at)
    entries = [
        Entry(
            at=detected_at,
            actor=rollback.requested_by,
            kind="detected",
            what=Milestone.DETECTED,
            detail=(
                "time given with detected=HH:MM"
                if rollback.detected_at
                else "time of the request (give detected=HH:MM to record when it was seen)"
            ),
            milestone=True,
        )
    ]
    completed = _completed_after(ordered)
    completed_at: datetime | None = None
    restored_at: datetime | None = None
    for index, event in enumerate(ordered):
        entry = describe(event)
        if completed == index and entry.kind == "verification":
            completed_at = event.at
            entries.append(_completed(event.at))
        entries.append(entry)
        if entry.what == Milestone.RESTORED:
            restored_at = event.at
        if completed == index and entry.kind != "verification":
            completed_at = event.at
            entries.append(_completed(event.at))
    return Timeline(
        entries=tuple(entries),
        detected_at=detected_at,
        initiated_at=initiated_at,
        completed_at=completed_at,
        restored_at=restored_at,
    )


def _completed(at: datetime) -> Entry:
    return Entry(
        at=at,
        actor=ROLLBOT,
        kind="completed",
        what=Milestone.COMPLETED,
        detail="every step done",
        milestone=True,
    )


def _completed_after(ordered: Sequence[Event]) -> int | None:
    """Return the index of the event that ends the last run: its last step before verifying.

    A rollback that failed in a step never got to verification, so it never completed.
    """
    verifying = [i for i, e in enumerate(ordered) if e.kind == "verification"]
    if not verifying:
        return None
    last = verifying[-1]
    steps = [i for i, e in enumerate(ordered[:last]) if e.kind == STEP]
    started = [i for i, e in enumerate(ordered[:last]) if e.kind == "started"]
    if steps and (not started or steps[-1] > started[-1]):
        return steps[-1]
    return last  # no step reported in this run: completed when verification began


def _after(text: str, prefix: str) -> str:
    """Drop the words the engine starts a line with when the timeline says them already."""
    return text.removeprefix(prefix).strip() or text


# Engine event kinds -> the guide's words; the detail is the recorded text minus its lead.
_WORDS: dict[str, tuple[str, str | None]] = {
    "severity": ("Severity confirmed", "Severity confirmed:"),
    "override": ("Decision matrix overridden (fix forward)", "Fix-forward overridden:"),
    "dry_run": ("Dry run complete", None),
    "break_glass": ("Break-glass approval", "Break-glass self-approval:"),
    "danger_confirmed": ("Data loss confirmed", None),
    "approved": ("Approval complete", None),
    "started": ("Rollback started", "Rolling back"),
    "verification": ("Verification", "Verification:"),
    "failed": ("Rollback failed", "Rollback failed:"),
    "interrupted": ("Rollback interrupted", None),
    "cancelled": ("Cancelled", None),
    "rejected": ("Rejected", None),
    "expired": ("Expired", None),
    "retry": ("Retry", None),
}


def describe(event: Event) -> Entry:
    """Turn one recorded event into a timeline line in the guide's words."""
    text = event.text
    kind = event.kind
    if kind == "requested":
        detail = text.split(":", 1)[1].strip() if ":" in text else text
        if text.startswith("Dry run"):
            return Entry(event.at, event.actor, kind, "Dry run initiated", detail)
        return Entry(event.at, event.actor, kind, Milestone.INITIATED, detail, milestone=True)
    if kind == STEP:
        return Entry(event.at, event.actor, kind, text)
    if kind == "approval":
        return Entry(event.at, event.actor, kind, "Approved")
    if kind == "fix_forward":
        return Entry(event.at, event.actor, kind, "Decided to fix forward")
    if kind == "approved":
        detail = "no approval needed by policy" if event.actor == "policy" else "lock taken"
        return Entry(event.at, event.actor, kind, "Approval complete", detail)
    if kind == "succeeded":
        if text.endswith("verification passed"):
            return Entry(event.at, event.actor, kind, Milestone.RESTORED, text, milestone=True)
        return Entry(
            event.at,
            event.actor,
            kind,
            "Rollback succeeded",
            f"{text}: service health NOT verified",
        )
    what, prefix = _WORDS.get(kind, (kind.replace("_", " ").capitalize(), None))
    detail = _after(text, prefix) if prefix else text
    return Entry(event.at, event.actor, kind, what, detail, typed=kind in TYPED)
