"""The incident report template, rendered from rollbacks and events built here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.incident import filename, people, render_report, report_key
from bot.matrix import ISSUES
from bot.models import Event, PlanStep, Rollback, State, StepStatus

T0 = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)
SECTIONS = [
    "## Summary",
    "## Timeline",
    "## Impact",
    "## Root Cause",
    "## Resolution",
    "## Prevention",
    "## Action Items",
]
NAMES = {"U_REQ": "Ana Requester", "U_APP": "Ben Approver", "U_CHK": "Cy Checker"}


def event(seconds: float, kind: str, text: str, actor: str = "rollbot") -> Event:
    return Event(
        rollback_id="rb-0000abcd",
        at=T0 + timedelta(seconds=seconds),
        actor=actor,
        kind=kind,
        text=text,
    )


def multi_step_failure() -> tuple[Rollback, list[Event]]:
    rb = Rollback(
        id="rb-0000abcd",
        service="backend",
        environment="production",
        requested_by="U_REQ",
        current_version="v1.2.4",
        target_version="v1.2.3",
        state=State.FAILED,
        steps=[
            PlanStep(
                name="backend",
                kind="docker_compose",
                current="v1.2.4",
                target="v1.2.3",
                status=StepStatus.DONE,
                result="backend runs v1.2.3",
            ),
            PlanStep(
                name="database",
                kind="postgres_migrations",
                current="0003_add_role",
                target="0002_users",
                status=StepStatus.FAILED,
                result="down.sql of 0003_add_role failed: column is in use",
                restores="database",
            ),
            PlanStep(
                name="sessions", kind="redis_state", status=StepStatus.NOT_RUN, restores="redis"
            ),
        ],
        failed_step=1,
        issue="minor_ui_bug",
        severity="low",
        action="fix forward, don't roll back",
        override_reason="UI bug | blocks checkout",
        approved_by=["U_APP"],
        error="Step 2 of 3 (database) failed: down.sql of 0003_add_role failed",
        target_state="1. backend (done): runs v1.2.3\n2. database (failed): at 0003_add_role",
        fix_forward_by="U_APP",
        detected_at=T0 - timedelta(minutes=4),
        created_at=T0,
        finished_at=T0 + timedelta(seconds=90),
    )
    events = [
        event(0, "requested", "Rollback requested: backend/production v1.2.4 → v1.2.3", "U_REQ"),
        event(10, "severity", "Severity confirmed: low (Minor UI bug) → fix forward", "U_REQ"),
        event(10, "override", "Fix-forward overridden: UI bug | blocks checkout", "U_REQ"),
        event(40, "approval", "Approved by <@U_APP>", "U_APP"),
        event(40, "approved", "Approved: lock taken, starting the rollback", "U_APP"),
        event(41, "started", "Rolling back backend/production to v1.2.3 in 3 steps"),
        event(50, "step", "Step 1/3: backend (docker_compose): v1.2.4 → v1.2.3"),
        event(60, "step", "Step 2/3: database (postgres_migrations): 0003_add_role → 0002_users"),
        event(90, "failed", f"Rollback failed: {rb.error}"),
        event(200, "fix_forward", "Decided to fix forward: <@U_APP>", "U_APP"),
    ]
    return rb, events


def section(report: str, heading: str) -> str:
    """Return the text of one `## ` section."""
    start = report.index(heading + "\n")
    end = report.find("\n## ", start + 1)
    return report[start : end if end != -1 else len(report)]


def test_failed_multi_step_report_names_the_failure_and_each_target() -> None:
    rb, events = multi_step_failure()
    report = render_report(rb, events, matrix=ISSUES, names=NAMES, now=T0)

    assert report.startswith("# Incident Report: 2024-05-01 Rollback\n")
    assert [h for h in SECTIONS if h in report] == SECTIONS
    assert [report.index(h) for h in SECTIONS] == sorted(report.index(h) for h in SECTIONS)
    assert "## Checklist" not in report
    summary = section(report, "## Summary")
    assert "failed: Step 2 of 3 (database) failed" in summary
    assert "Requested by Ana Requester, approved by Ben Approver." in summary
    assert "| Fix-forward overridden because | UI bug \\| blocks checkout |" in summary
    assert "| Severity | low |" in summary and "| Issue | Minor UI bug |" in summary
    assert "<@" not in report  # people by name in the file, not as Slack mentions

    timeline = section(report, "## Timeline")
    assert "- 02:56 **Issue detected**" in timeline
    assert "Decided to fix forward (Ben Approver)" in timeline
    assert "| Initiated → completed | did not complete |" in timeline
    assert "| Detected → restored | not restored by the rollback |" in timeline

    resolution = section(report, "## Resolution")
    assert "| 1 | backend (docker_compose): v1.2.4 → v1.2.3 | done | backend runs v1.2.3 |" in (
        resolution
    )
    assert "| 2 | database (postgres_migrations): 0003_add_role → 0002_users | failed |" in (
        resolution
    )
    assert "| 3 | sessions (redis_state) | not run |  |" in resolution
    assert "### Failure" in resolution and "Verification did not run." in resolution
    assert "2. database (failed): at 0003_add_role" in resolution
    assert "Ben Approver decided to fix forward" in resolution
    assert "- [ ] Bring backend/production to a known good state" in section(
        report, "## Action Items"
    )
    assert "A database step ran" in section(report, "## Impact")
    assert report.count("_To be written:") >= 5


@dataclass
class Item:
    label: str
    done: bool
    by: str | None = None


@dataclass
class Section:
    title: str
    items: list[Item] = field(default_factory=list)


def test_checklist_given_as_objects_or_mappings_is_rendered_with_names() -> None:
    rb, events = multi_step_failure()
    checklist = [
        Section("Pre-Rollback", [Item("Identify stable version", True, "U_CHK"), Item("x", False)]),
        {
            "title": "Post-Rollback",
            "items": [{"label": "Verify all services healthy", "done": True, "by": "rollbot"}],
        },
    ]
    assert people(rb, events, checklist) == {"U_REQ", "U_APP", "U_CHK"}
    report = render_report(rb, events, matrix=ISSUES, names=NAMES, checklist=checklist)
    shown = section(report, "## Checklist")
    assert re.findall(r"^(###.*|- \[.\].*)$", shown, re.M) == [
        "### Pre-Rollback",
        "- [x] Identify stable version (Cy Checker)",
        "- [ ] x",
        "### Post-Rollback",
        "- [x] Verify all services healthy (rollbot)",
    ]


def test_names_default_to_ids_and_the_key_changes_with_each_ending() -> None:
    rb, events = multi_step_failure()
    report = render_report(rb, events, matrix=ISSUES)
    assert "Requested by U_REQ, approved by U_APP." in report
    assert filename(rb) == "incident-rb-0000abcd.md"
    again = rb.model_copy(update={"finished_at": T0 + timedelta(minutes=9)})
    assert report_key(rb).startswith("failed@") and report_key(again) != report_key(rb)


def test_reasons_stay_on_their_line_and_secrets_stay_out_of_the_file() -> None:
    rb, events = multi_step_failure()
    reason = "UI bug\n## Root Cause\nnobody, see redis://:hunter2@cache"
    rb = rb.model_copy(
        update={
            "override_reason": reason,
            "error": "Step 2 failed: DATABASE_URL=postgresql://app:s3cr3t@db/x refused",
            "target_state": "database at postgresql://app:s3cr3t@db/x",
        }
    )
    events[2] = event(10, "override", f"Fix-forward overridden: {reason}", "U_REQ")
    report = render_report(rb, events, matrix=ISSUES, names=NAMES, now=T0)

    assert report.count("\n## Root Cause\n") == 1
    assert "hunter2" not in report and "s3cr3t" not in report
    assert "postgresql://[redacted]@db/x refused" in section(report, "## Summary")
    assert "Decision matrix overridden (fix forward): UI bug ## Root Cause nobody, see " in (
        section(report, "## Timeline")
    )
    assert "because: UI bug ## Root Cause nobody, see redis://[redacted]@cache" in (
        section(report, "## Resolution")
    )
