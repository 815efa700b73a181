"""The checklist from store records: what rollbot ticks itself, and people's ticks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.checklists import (
    GUIDE,
    MONITORING_COMPLETE,
    ChecklistSection,
    apply_ticks,
    checklist_sections,
)
from bot.config import parse_config
from bot.engine import Engine
from bot.errors import NotAllowed
from bot.models import Event, PlanStep, Rollback, State, StepStatus, utcnow
from bot.notifications import STATUS_EVENT, PageStatus, status_event_text
from bot.pool import ProviderPool
from bot.store.sqlite import SQLiteStore
from tests.e2e_helpers import APPROVER, OUTSIDER, REQUESTER, backend_config, backend_rollback

AUTOMATIC = {"database_backup", "execute", "services_healthy", "smoke_tests", "monitor"}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(str(tmp_path / "rollbot.db")) as opened:
        yield opened


def rollback(state: State = State.REQUESTED, *steps: StepStatus) -> Rollback:
    plan = [PlanStep(name=f"step{i}", kind="docker_compose", status=s) for i, s in enumerate(steps)]
    steps = plan or [PlanStep(name="docker_compose", kind="docker_compose")]
    return backend_rollback(state=state, steps=steps)


async def add(store: SQLiteStore, rb: Rollback, kind: str, text: str, minutes: int) -> Event:
    event = Event(
        rollback_id=rb.id,
        actor="rollbot",
        kind=kind,
        text=text,
        at=rb.created_at + timedelta(minutes=minutes),
    )
    await store.add_event(event)
    return event


def items(sections: list[ChecklistSection]) -> dict[str, tuple[bool, str | None]]:
    return {i.key: (i.done, i.by) for s in sections for i in s.items}


async def test_sections_follow_the_guide_and_start_empty(store: SQLiteStore) -> None:
    rb = rollback()
    await store.create(rb)
    sections = await checklist_sections(store, store, rb.id)
    assert [s.title for s in sections] == ["Pre-Rollback", "During Rollback", "Post-Rollback"]
    assert [i.label for i in sections[0].items] == [
        "Identify stable version to rollback to",
        "Notify team of rollback decision",
        "Create database backup",
        "Document current state",
    ]
    assert [len(s.items) for s in sections] == [len(items) for _, _, items in GUIDE] == [4, 4, 7]
    assert all(len(s.items) <= 10 for s in sections)  # Slack's limit per checkboxes element
    assert not any(done for done, _ in items(sections).values())
    auto = {i.key for s in sections for i in s.items if i.automatic}
    assert auto == AUTOMATIC | {"status_page"}


async def test_rollbot_ticks_what_its_records_show(store: SQLiteStore) -> None:
    rb = rollback(State.SUCCEEDED, StepStatus.DONE, StepStatus.DONE)
    await store.create(rb)
    await add(store, rb, "started", "Rolling back backend/production to v1.2.3 in 2 steps", 1)
    await add(store, rb, "step", "Step 1/2: backend", 2)
    backup = await add(
        store,
        rb,
        "step",
        "Step 2/2 (database): Backup written: 20240101_pre-rollback.dump (1.2 MB) in /backups.",
        3,
    )
    last_step = await add(store, rb, "step", "Step 2/2 (database): 1 migration rolled back", 4)
    verified = await add(store, rb, "verification", "Verification: 2/2 checks passed", 5)
    await add(store, rb, "succeeded", "Rolled back to v1.2.3; verification passed", 5)

    sections = await checklist_sections(store, store, rb.id)
    found = {i.key: i for s in sections for i in s.items}
    assert found["database_backup"].done and found["database_backup"].by == "rollbot"
    assert found["database_backup"].at == backup.at
    assert found["database_backup"].note == "backup 20240101_pre-rollback.dump"
    assert found["execute"].done and found["execute"].at == last_step.at
    assert found["services_healthy"].done and found["services_healthy"].at == verified.at
    assert found["smoke_tests"].done and found["smoke_tests"].note == "2/2 checks passed"
    assert not found["monitor"].done  # until the monitoring window has ended
    assert not found["status_page"].done

    await add(store, rb, MONITORING_COMPLETE, "Monitoring complete: no change in 30 min", 35)
    await add(store, rb, STATUS_EVENT, status_event_text(PageStatus.INVESTIGATING), 1)
    found = {i.key: i for s in await checklist_sections(store, store, rb.id) for i in s.items}
    assert found["monitor"].done and found["monitor"].by == "rollbot"
    assert not found["status_page"].done  # "investigating" is not an update to resolved
    await add(store, rb, STATUS_EVENT, status_event_text(PageStatus.RESOLVED), 6)
    found = {i.key: i for s in await checklist_sections(store, store, rb.id) for i in s.items}
    assert found["status_page"].done and found["status_page"].by == "rollbot"
    manual = {"identify_version", "notify_team", "document_state", "error_logs", "metrics"}
    assert not any(found[key].done for key in manual)


async def test_nothing_is_ticked_for_what_did_not_happen(store: SQLiteStore) -> None:
    rb = rollback(State.FAILED, StepStatus.DONE, StepStatus.FAILED)
    await store.create(rb)
    await add(store, rb, "started", "Rolling back", 1)
    await add(store, rb, "step", "Step 1/2: backend", 2)
    await add(store, rb, "failed", "Rollback failed: Step 2 of 2 (database) failed", 3)
    done = {k for k, (d, _) in items(await checklist_sections(store, store, rb.id)).items() if d}
    assert done == set()

    unchecked = rollback(State.SUCCEEDED, StepStatus.DONE).model_copy(update={"id": "rb-0000abce"})
    await store.create(unchecked)
    await add(store, unchecked, "started", "Rolling back", 1)
    await add(store, unchecked, "verification", "Verification: 0/0 checks passed", 2)
    await add(store, unchecked, "step", "No verification checks are configured here", 2)
    done = {
        k for k, (d, _) in items(await checklist_sections(store, store, unchecked.id)).items() if d
    }
    assert done == {"execute"}  # health was not checked, so neither check item is ticked

    failing = rollback(State.FAILED, StepStatus.DONE).model_copy(update={"id": "rb-0000abcf"})
    await store.create(failing)
    await add(store, failing, "verification", "Verification: 1/2 checks passed", 2)
    done = {
        k for k, (d, _) in items(await checklist_sections(store, store, failing.id)).items() if d
    }
    assert done == {"execute"}  # it ran; its verification failed


@pytest.fixture
async def engine(store: SQLiteStore) -> Engine:
    config = parse_config(backend_config("project", 8080, requesters={"users": [REQUESTER]}))
    return Engine(config, store, ProviderPool(config))


async def test_people_tick_and_untick_with_history_and_audit(
    store: SQLiteStore, engine: Engine
) -> None:
    rb = rollback(State.SUCCEEDED, StepStatus.DONE)
    await store.create(rb)
    await add(store, rb, "verification", "Verification: 1/1 checks passed", 2)

    applied = await apply_ticks(engine, rb.id, REQUESTER, "during", {"error_logs", "metrics"})
    assert [(m.item, m.done) for m in applied.marks] == [("error_logs", True), ("metrics", True)]
    applied = await apply_ticks(engine, rb.id, APPROVER, "during", {"execute", "error_logs"})
    assert [(m.item, m.done) for m in applied.marks] == [("metrics", False)]
    assert applied.refused == []

    found = items(await checklist_sections(store, store, rb.id))
    assert found["error_logs"] == (True, REQUESTER)
    assert found["metrics"] == (False, None)
    assert found["execute"] == (True, "rollbot")
    marks = await store.checklist_marks(rb.id)
    assert [(m.item, m.done, m.actor) for m in marks] == [
        ("error_logs", True, REQUESTER),
        ("metrics", True, REQUESTER),
        ("metrics", False, APPROVER),
    ]
    audit = [(a.actor, a.action, a.details["item"]) for a in await store.audit_log(rb.id)]
    assert audit == [
        (REQUESTER, "checklist_tick", "error_logs"),
        (REQUESTER, "checklist_tick", "metrics"),
        (APPROVER, "checklist_untick", "metrics"),
    ]


async def test_rollbot_ticks_cannot_be_removed_and_outsiders_cannot_tick(
    store: SQLiteStore, engine: Engine
) -> None:
    rb = rollback(State.SUCCEEDED, StepStatus.DONE)
    await store.create(rb)
    await add(store, rb, "verification", "Verification: 1/1 checks passed", 2)

    applied = await apply_ticks(engine, rb.id, APPROVER, "post", {"database_integrity"})
    assert {i.key for i in applied.refused} == {"services_healthy", "smoke_tests"}
    assert [m.item for m in applied.marks] == ["database_integrity"]
    found = items(await checklist_sections(store, store, rb.id))
    assert found["services_healthy"] == (True, "rollbot")

    with pytest.raises(NotAllowed, match="can tick its checklist"):
        await apply_ticks(engine, rb.id, OUTSIDER, "post", {"postmortem"})
    assert not items(await checklist_sections(store, store, rb.id))["postmortem"][0]


async def test_a_person_may_tick_what_rollbot_has_not_done(
    store: SQLiteStore, engine: Engine
) -> None:
    """No checks configured: someone verifies by hand; rollbot's evidence wins once it exists."""
    rb = rollback(State.SUCCEEDED, StepStatus.DONE)
    await store.create(rb)
    await apply_ticks(engine, rb.id, REQUESTER, "post", {"services_healthy"})
    assert items(await checklist_sections(store, store, rb.id))["services_healthy"] == (
        True,
        REQUESTER,
    )
    await store.add_event(
        Event(
            rollback_id=rb.id,
            actor="rollbot",
            kind="verification",
            text="Verification: 3/3 checks passed",
            at=utcnow(),
        )
    )
    assert items(await checklist_sections(store, store, rb.id))["services_healthy"] == (
        True,
        "rollbot",
    )
