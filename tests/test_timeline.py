"""The guide's timeline of a rollback: order, milestones, who did what, and the durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.models import Event, Rollback, State
from bot.timeline import Milestone, build
from handlers.timeline import MAX_STEP_LINES, SECTION_CHARS, timeline_blocks, timeline_lines
from tests.support import records

T0 = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)


def rollback(**fields: object) -> Rollback:
    return records.rollback(created_at=T0, **fields)


def event(seconds: float, kind: str, text: str, actor: str = "rollbot") -> Event:
    return Event(
        rollback_id="rb-0000abcd",
        at=T0 + timedelta(seconds=seconds),
        actor=actor,
        kind=kind,
        text=text,
    )


def succeeded_events() -> list[Event]:
    return [
        event(0, "requested", "Rollback requested: backend/production v1.2.4 → v1.2.3", "U_REQ"),
        event(20, "severity", "Severity confirmed: critical (Critical bug) → immediate", "U_REQ"),
        event(60, "approval", "Approved by <@U_APP>", "U_APP"),
        event(60, "approved", "Approved: lock taken, starting the rollback", "U_APP"),
        event(61, "started", "Rolling back backend/production to v1.2.3"),
        event(70, "step", "Pulling v1.2.3"),
        event(95, "step", "backend-1 runs v1.2.3"),
        event(96, "verification", "Verification: 1/1 checks passed"),
        event(97, "succeeded", "Rolled back to v1.2.3; verification passed"),
    ]


def test_milestones_decisions_and_steps_in_time_order_with_who() -> None:
    rb = rollback(state=State.SUCCEEDED, detected_at=T0 - timedelta(minutes=7))
    events = succeeded_events()
    timeline = build(rb, [events[4], *events[:4], *events[5:]])  # put in time order

    assert [(e.what, e.actor) for e in timeline.entries] == [
        (Milestone.DETECTED, "U_REQ"),
        (Milestone.INITIATED, "U_REQ"),
        ("Severity confirmed", "U_REQ"),
        ("Approved", "U_APP"),
        ("Approval complete", "U_APP"),
        ("Rollback started", "rollbot"),
        ("Pulling v1.2.3", "rollbot"),
        ("backend-1 runs v1.2.3", "rollbot"),
        (Milestone.COMPLETED, "rollbot"),
        ("Verification", "rollbot"),
        (Milestone.RESTORED, "rollbot"),
    ]
    times = [e.at for e in timeline.entries]
    assert times == sorted(times)
    assert [e.what for e in timeline.entries if e.milestone] == list(Milestone)
    assert timeline.entries[1].detail == "backend/production v1.2.4 → v1.2.3"
    assert timeline.entries[2].detail == "critical (Critical bug) → immediate"
    assert timeline.clock(timeline.entries[0].at) == "02:53"

    assert timeline.detected_to_initiated == timedelta(minutes=7)
    assert timeline.initiated_to_completed == timedelta(seconds=95)
    assert timeline.detected_to_restored == timedelta(minutes=7, seconds=97)


def test_without_detected_the_request_time_is_used() -> None:
    timeline = build(rollback(), succeeded_events()[:1])
    assert timeline.detected_at == timeline.initiated_at == T0
    assert timeline.detected_to_initiated == timedelta(0)
    assert "detected=HH:MM" in (timeline.entries[0].detail or "")
    assert timeline.initiated_to_completed is None
    assert timeline.detected_to_restored is None


def test_a_step_failure_never_completes_and_a_retry_completes_later() -> None:
    failed = [
        *succeeded_events()[:6],
        event(80, "failed", "Rollback failed: Step 2 of 2 (database) failed: boom"),
    ]
    timeline = build(rollback(state=State.FAILED), failed)
    assert timeline.completed_at is None and timeline.restored_at is None
    assert timeline.entries[-1].what == "Rollback failed"
    assert timeline.entries[-1].detail == "Step 2 of 2 (database) failed: boom"
    assert Milestone.COMPLETED not in [e.what for e in timeline.entries]

    retried = [
        *failed,
        event(300, "retry", "Retry from step 2 (database) by <@U_REQ>", "U_REQ"),
        event(301, "started", "Rolling back backend/production to v1.2.3 in 2 steps"),
        event(320, "step", "Step 2/2 (database): 1 migration rolled back"),
        event(330, "verification", "Verification: 1/1 checks passed"),
        event(331, "succeeded", "Rolled back to v1.2.3; verification passed"),
    ]
    timeline = build(rollback(state=State.SUCCEEDED), retried)
    whats = [e.what for e in timeline.entries]
    assert whats.index(Milestone.COMPLETED) == whats.index("Verification") - 1
    assert whats.index(Milestone.COMPLETED) > whats.index("Retry")
    assert timeline.completed_at == T0 + timedelta(seconds=320)
    assert timeline.detected_to_restored == timedelta(seconds=331)


def test_verification_failure_completed_but_not_restored() -> None:
    events = [
        *succeeded_events()[:8],
        event(96, "verification", "Verification: 0/1 checks passed"),
        event(97, "failed", "Rollback failed: Verification failed: backend health."),
    ]
    del events[7]
    timeline = build(rollback(state=State.FAILED), events)
    assert timeline.completed_at == T0 + timedelta(seconds=95)
    assert timeline.restored_at is None
    assert [e.what for e in timeline.entries][-3:] == [
        Milestone.COMPLETED,
        "Verification",
        "Rollback failed",
    ]


def test_success_without_checks_is_not_called_restored() -> None:
    events = [
        *succeeded_events()[:8],
        event(97, "succeeded", "Rolled back to v1.2.3; no checks configured"),
    ]
    timeline = build(rollback(state=State.SUCCEEDED), events)
    assert timeline.restored_at is None
    assert timeline.entries[-1].what == "Rollback succeeded"
    assert "NOT verified" in (timeline.entries[-1].detail or "")


def test_unknown_kinds_keep_their_text_and_a_new_day_shows_its_date() -> None:
    late = Event(
        rollback_id="rb-0000abcd",
        at=T0 + timedelta(days=1),
        actor="rollbot",
        kind="monitoring_alert",
        text="backend health failed again",
    )
    timeline = build(rollback(), [*succeeded_events()[:1], late])
    entry = timeline.entries[-1]
    assert (entry.what, entry.detail) == ("Monitoring alert", "backend health failed again")
    assert timeline.clock(entry.at) == "05-02 03:00"


def test_slack_timeline_sums_up_long_step_lists_within_slack_limits() -> None:
    steps = [event(100 + i, "step", f"step {i}: " + "x" * 300) for i in range(400)]
    events = [*succeeded_events()[:5], *steps, *succeeded_events()[7:]]
    rb = rollback(state=State.SUCCEEDED, verification="1/1 checks passed")
    timeline = build(rb, events)

    lines = timeline_lines(timeline)
    assert sum("x" * 300 in line for line in lines) == MAX_STEP_LINES
    assert any("400 provider steps" in line for line in lines)
    assert "step 399" in "\n".join(lines) and "step 0:" not in "\n".join(lines)

    blocks = timeline_blocks(rb, timeline)
    assert len(blocks) <= 50
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert all(len(t) <= SECTION_CHARS for t in texts)
    shown = "\n".join(texts)
    order = ["Issue detected", "Rollback initiated", "Rollback completed", "Service restored"]
    assert [shown.index(word) for word in order] == sorted(shown.index(w) for w in order)
    assert "<@U_REQ>" in shown and "<@U_APP>" in shown
    durations = blocks[-1]["elements"][0]["text"]
    assert "Detected → initiated: less than a second" in durations
    assert "Detected → restored: " in durations
