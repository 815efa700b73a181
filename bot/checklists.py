"""The guide's rollback checklist: what rollbot ticks from its own records, and people's ticks.

An item rollbot did itself is derived from what the store holds (timeline events, step
statuses), never stored as a tick, so it cannot drift from what happened. People's ticks
are an append-only history in the store; an item's state is its latest mark.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel

from bot.engine import Engine
from bot.errors import InvalidRequest, NotAllowed
from bot.models import OPEN_STATES, AuditEntry, Event, Rollback, StepStatus
from bot.notifications import BOT, RESOLVED_EVENT_TEXT, STATUS_EVENT
from bot.records import ChecklistMark
from bot.store.base import RecordStore, RollbackStore

# Recorded by the post-rollback monitoring (bot/monitoring.py) when its window ends.
MONITORING_COMPLETE = "monitoring_complete"

_VERIFIED = re.compile(r"Verification: (\d+)/(\d+) checks passed")
_BACKUP = "Backup written: "


class ChecklistItem(BaseModel):
    """One line of the checklist and who ticked it when (`by` is "rollbot" or a user id)."""

    key: str
    label: str
    done: bool = False
    by: str | None = None
    at: datetime | None = None
    automatic: bool = False  # rollbot ticks it when it does it itself
    note: str | None = None  # what rollbot's tick rests on, e.g. "2/2 checks passed"


class ChecklistSection(BaseModel):
    """One phase of the checklist: pre-, during- or post-rollback."""

    key: str
    title: str
    items: list[ChecklistItem]


# The guide's "Rollback Checklist", item for item.
GUIDE: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "pre",
        "Pre-Rollback",
        (
            ("identify_version", "Identify stable version to rollback to"),
            ("notify_team", "Notify team of rollback decision"),
            ("database_backup", "Create database backup"),
            ("document_state", "Document current state"),
        ),
    ),
    (
        "during",
        "During Rollback",
        (
            ("execute", "Execute rollback procedure"),
            ("error_logs", "Monitor error logs"),
            ("metrics", "Watch performance metrics"),
            ("critical_paths", "Test critical paths"),
        ),
    ),
    (
        "post",
        "Post-Rollback",
        (
            ("services_healthy", "Verify all services healthy"),
            ("smoke_tests", "Run smoke tests"),
            ("database_integrity", "Check database integrity"),
            ("monitor", "Monitor for 30 minutes"),
            ("status_page", "Update status page"),
            ("document_incident", "Document incident"),
            ("postmortem", "Schedule postmortem"),
        ),
    ),
)
ITEMS = {key: label for _, _, items in GUIDE for key, label in items}
PHASES = {phase: [key for key, _ in items] for phase, _, items in GUIDE}


@dataclass(frozen=True)
class Tick:
    """Evidence in the store that rollbot did an item itself."""

    at: datetime
    note: str | None = None


def _first(events: Sequence[Event], match: Callable[[Event], bool]) -> Event | None:
    return next((e for e in events if match(e)), None)


def _backup(rb: Rollback, events: Sequence[Event]) -> Tick | None:
    found = _first(events, lambda e: e.kind == "step" and _BACKUP in e.text)
    if found is None:
        return None
    written = found.text.split(_BACKUP, 1)[1].split(" ", 1)[0]
    return Tick(found.at, f"backup {written}")


def _executed(rb: Rollback, events: Sequence[Event]) -> Tick | None:
    ran = {StepStatus.DONE, StepStatus.SKIPPED}
    if rb.state in OPEN_STATES or not rb.steps or any(s.status not in ran for s in rb.steps):
        return None
    # The last step reported before the verification began is when the procedure ended.
    starts = [i for i, e in enumerate(events) if e.kind == "started"]
    after = events[starts[-1] :] if starts else events
    last_step: Event | None = None
    for event in after:
        if event.kind == "verification":
            break
        if event.kind == "step":
            last_step = event
    at = last_step.at if last_step else rb.updated_at
    return Tick(at, f"{len(rb.steps)} steps" if rb.multi_step else f"to {rb.shown_target}")


def _verified(rb: Rollback, events: Sequence[Event]) -> Tick | None:
    for event in events:
        found = _VERIFIED.fullmatch(event.text) if event.kind == "verification" else None
        if found and found[1] == found[2] and int(found[2]) > 0:
            return Tick(event.at, f"{found[1]}/{found[2]} checks passed")
    return None


def _monitored(rb: Rollback, events: Sequence[Event]) -> Tick | None:
    found = _first(events, lambda e: e.kind == MONITORING_COMPLETE)
    return Tick(found.at) if found else None


def _status_page(rb: Rollback, events: Sequence[Event]) -> Tick | None:
    found = _first(events, lambda e: e.kind == STATUS_EVENT and e.text == RESOLVED_EVENT_TEXT)
    return Tick(found.at, "resolved") if found else None


# The configured checks are rollbot's smoke tests (the guide's verify-rollback.sh checks
# health, the frontend, the database and key endpoints): both items rest on a passing
# verification, and neither is ticked when no checks are configured.
AUTOMATIC: dict[str, Callable[[Rollback, Sequence[Event]], Tick | None]] = {
    "database_backup": _backup,
    "execute": _executed,
    "services_healthy": _verified,
    "smoke_tests": _verified,
    "monitor": _monitored,
    "status_page": _status_page,
}


def derive(
    rb: Rollback, events: Sequence[Event], marks: Sequence[ChecklistMark]
) -> list[ChecklistSection]:
    """Build the checklist from a rollback, its timeline and people's marks."""
    latest = {mark.item: mark for mark in marks}
    sections = []
    for phase, title, entries in GUIDE:
        items = []
        for key, label in entries:
            rule = AUTOMATIC.get(key)
            tick = rule(rb, events) if rule else None
            mark = latest.get(key)
            item = ChecklistItem(key=key, label=label, automatic=rule is not None)
            if tick is not None:
                # What rollbot did is evidence; it wins over a person's mark either way.
                item = item.model_copy(
                    update={"done": True, "by": BOT, "at": tick.at, "note": tick.note}
                )
            elif mark is not None and mark.done:
                item = item.model_copy(update={"done": True, "by": mark.actor, "at": mark.at})
            items.append(item)
        sections.append(ChecklistSection(key=phase, title=title, items=items))
    return sections


async def checklist_sections(
    rollbacks: RollbackStore, records: RecordStore, rollback_id: str
) -> list[ChecklistSection]:
    """Return a rollback's checklist as it stands: rollbot's ticks and people's."""
    rb = await rollbacks.get(rollback_id)
    if rb is None:
        raise InvalidRequest(f"No rollback {rollback_id}.")
    return derive(rb, await records.events(rollback_id), await records.checklist_marks(rollback_id))


@dataclass
class Applied:
    """What a click on the checklist changed, and the bot's items it refused to untick."""

    marks: list[ChecklistMark] = field(default_factory=list)
    refused: list[ChecklistItem] = field(default_factory=list)


async def may_tick(engine: Engine, rb: Rollback, user: str) -> bool:
    """Return True for people who may request or approve rollbacks of the service."""
    return await engine.access.participant(rb, user)


async def apply_ticks(
    engine: Engine, rollback_id: str, user: str, phase: str, selected: set[str]
) -> Applied:
    """Make a phase's ticks what `user` now selects; rollbot's own ticks stay as they are."""
    if phase not in PHASES:
        raise InvalidRequest("Unknown checklist section.")
    rb = await engine.get(rollback_id)
    if not await may_tick(engine, rb, user):
        raise NotAllowed(
            f"Only people who may request or approve rollbacks of {rb.service}/"
            f"{rb.environment} can tick its checklist."
        )
    sections = await checklist_sections(engine.rollbacks, engine.records, rb.id)
    items = next(s.items for s in sections if s.key == phase)
    applied = Applied()
    for item in items:
        wanted = item.key in selected
        if item.done and item.by == BOT:
            if not wanted:
                applied.refused.append(item)
            continue
        if wanted != item.done:
            mark = ChecklistMark(rollback_id=rb.id, item=item.key, done=wanted, actor=user)
            await engine.records.add_checklist_mark(mark)
            await engine.records.audit(
                AuditEntry(
                    actor=user,
                    action="checklist_tick" if wanted else "checklist_untick",
                    rollback_id=rb.id,
                    details={"item": item.key, "label": item.label, "phase": phase},
                )
            )
            applied.marks.append(mark)
    return applied
