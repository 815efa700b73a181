"""End to end: the live timeline in the thread and the incident report file it gets."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from bot.models import Event, Rollback, State, utcnow
from bot.time_words import duration
from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    CHANNEL,
    OUTSIDER,
    REQUESTER,
    confirm,
    deploy,
    ephemeral_text,
    has_action,
    ready_to_approve,
    request_card,
    wait_card,
)
from tests.support.bot import RunningBot, StartBot
from tests.support.docker import ComposeContainerFactory
from tests.support.slack import FakeSlack, text_of

SECTIONS = [
    "## Summary",
    "## Timeline",
    "## Impact",
    "## Root Cause",
    "## Resolution",
    "## Prevention",
    "## Action Items",
]


def named(name: str) -> dict[str, Any]:
    """What users.info says about someone with this real name."""
    return {"real_name": name, "profile": {"real_name": name, "display_name": name.split()[0]}}


def section(report: str, heading: str) -> str:
    """Return the text of one `## ` section of a report."""
    start = report.index(heading + "\n")
    end = report.find("\n## ", start + 1)
    return report[start : end if end != -1 else len(report)]


async def reported(bot: RunningBot) -> Rollback:
    """Wait until the only rollback is marked as reported, and return it."""
    for _ in range(100):
        (rb,) = await bot.store.find()
        if rb.reported:
            return rb
        await asyncio.sleep(0.05)
    return rb


def in_order(text: str, phrases: list[str]) -> bool:
    """Return True when every phrase is in the text, each after the one before."""
    at = -1
    for phrase in phrases:
        at = text.find(phrase, at + 1)
        if at == -1:
            return False
    return True


def timeline_messages(fake: FakeSlack, card: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        m
        for m in fake.thread(card["channel"], card["ts"])
        if m["text"].startswith("Timeline of rollback")
    ]


def at(events: list[Event], kind: str, last: bool = False) -> Any:
    found = [e.at for e in events if e.kind == kind]
    return found[-1] if last else found[0]


async def test_report_and_live_timeline_of_a_rollback(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory
) -> None:
    _before, bot = await deploy(start_rollbot, compose_container)
    fake = bot.fake
    fake.users[REQUESTER] = named("Ana Requester")
    fake.users[APPROVER] = named("Ben Approver")
    detected = (utcnow() - timedelta(minutes=5)).strftime("%H:%M")

    card = await request_card(bot, f"backend v1.2.3 detected={detected}")
    first = await fake.wait_for(lambda: (r := fake.thread(CHANNEL, card["ts"])) and r[0])
    assert in_order(text_of(first), ["Timeline", "Issue detected", "Rollback initiated"])
    assert f"`{detected}` *Issue detected*" in text_of(first)

    await confirm(bot, card, "critical_bug")
    card = await wait_card(bot, card, lambda m: has_action(m, ActionId.APPROVE))
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    (upload,) = await fake.wait_for(lambda: fake.uploads(CHANNEL, card["ts"]))

    # The report is marked as done once Slack has taken the upload, just after it.
    rb = await reported(bot)
    assert rb.state is State.SUCCEEDED
    assert rb.reported and rb.reported.startswith("succeeded@")
    assert rb.timeline_ts == first["ts"]
    events = await bot.store.events(rb.id)
    assert rb.detected_at is not None
    assert upload["name"] == f"incident-{rb.id}.md"
    report = upload["content"]

    assert [h for h in SECTIONS if h in report] == SECTIONS
    assert in_order(report, SECTIONS)
    assert "<@" not in report
    checklist = section(report, "## Checklist")
    for done in ["Execute rollback procedure", "Verify all services healthy", "Run smoke tests"]:
        assert f"- [x] {done} (rollbot)" in checklist, checklist
    assert "- [ ] Notify team" in checklist and "- [ ] Document incident" in checklist
    summary = section(report, "## Summary")
    for row in [
        "| Service | backend |",
        "| Environment | production |",
        "| Version before | `v1.2.4` |",
        "| Rolled back to | `v1.2.3` |",
        "| Requested by | Ana Requester |",
        "| Approved by | Ben Approver |",
        "| Severity | critical |",
        "| Issue | Critical bug affecting all users |",
        "| Decision matrix | immediate rollback |",
        "| Outcome | succeeded, verification passed (1/1 checks passed) |",
    ]:
        assert row in summary, row

    timeline = section(report, "## Timeline")
    assert f"- {detected} **Issue detected**: time given with detected=HH:MM (Ana Requester)" in (
        timeline
    )
    order = [
        "**Issue detected**",
        "**Rollback initiated**: backend/production v1.2.4 → v1.2.3 (Ana Requester)",
        "Severity confirmed: critical (Critical bug affecting all users) → immediate rollback",
        "Approved (Ben Approver)",
        "Rollback started",
        "**Rollback completed**",
        "Verification: 1/1 checks passed (rollbot)",
        "**Service restored**",
    ]
    assert in_order(timeline, order), timeline
    steps = [e.text for e in events if e.kind == "step"]
    assert steps and all(f"{text} (rollbot)" in timeline for text in steps)
    completed = max(e.at for e in events if e.kind == "step")
    expected = {
        "Detected → initiated": at(events, "requested") - rb.detected_at,
        "Initiated → completed": completed - at(events, "requested"),
        "Detected → restored": at(events, "succeeded") - rb.detected_at,
    }
    for label, delta in expected.items():
        assert f"| {label} | {duration(delta)} |" in timeline, (label, timeline)

    resolution = section(report, "## Resolution")
    assert "Rolled back backend/production from `v1.2.4` to `v1.2.3`" in resolution
    assert "Status: done" in resolution
    table = resolution.split("```text\n", 1)[1].split("```", 1)[0]
    assert table == rb.verification_table + "\n"
    assert "backend health" in table and " ok " in table
    assert report.count("_To be written:") >= 5

    comment = next(m for m in fake.thread(CHANNEL, card["ts"]) if m.get("files"))
    assert f"Incident report of rollback {rb.id}" in text_of(comment)
    assert "succeeded" in text_of(comment)

    # The live timeline is one message, updated at every move; it holds it all in order.
    assert [m["ts"] for m in timeline_messages(fake, card)] == [first["ts"]]
    shown = text_of(fake.message(CHANNEL, first["ts"]))
    assert in_order(
        shown,
        [
            f"*Issue detected*: time given with detected=HH:MM · <@{REQUESTER}>",
            f"*Rollback initiated*: backend/production v1.2.4 → v1.2.3 · <@{REQUESTER}>",
            f"Severity confirmed: critical (Critical bug affecting all users) → immediate "
            f"rollback · <@{REQUESTER}>",
            f"Approved · <@{APPROVER}>",
            "*Rollback completed*",
            "*Service restored*",
            f"Detected → restored: {duration(expected['Detected → restored'])}",
        ],
    ), shown
    updates = [c for c in fake.calls_of("chat.update") if c.args.get("ts") == first["ts"]]
    assert len(updates) >= 3

    # On demand, a fresh report goes to the thread, wherever the command was typed.
    status, _ = await bot.slack.command(f"report {rb.id}", user=OUTSIDER, channel="C_ELSEWHERE")
    assert status == 200
    _, again = await fake.wait_for(lambda: (u := fake.uploads(CHANNEL, card["ts"]))[1:] and u)
    assert again["id"] != upload["id"] and again["name"] == upload["name"]
    assert in_order(again["content"], SECTIONS)
    assert "| Requested by | Ana Requester |" in again["content"]
    await fake.wait_for(lambda: f"is in its thread in <#{CHANNEL}>" in ephemeral_text(fake))

    await bot.slack.command("report rb-00000000", user=OUTSIDER, channel=CHANNEL)
    await fake.wait_for(lambda: "No rollback rb-00000000" in ephemeral_text(fake))
    assert len(fake.uploads()) == 2  # the automatic report went once


async def test_failed_rollback_report_names_the_failure_and_the_state(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory
) -> None:
    _before, bot = await deploy(start_rollbot, compose_container)
    fake = bot.fake
    card = await ready_to_approve(bot, "backend v9.9.9-broken", "critical_bug")
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    (upload,) = await fake.wait_for(lambda: fake.uploads(CHANNEL, card["ts"]))

    (rb,) = await bot.store.find()
    assert rb.state is State.FAILED and rb.error and rb.target_state
    report = upload["content"]
    assert in_order(report, SECTIONS)
    assert "| Outcome | failed |" in report
    assert "| Tried to roll back to | `v9.9.9-broken` |" in report
    assert "| Rolled back to |" not in report
    assert "| Detected → restored | not restored by the rollback |" in report
    assert "| Initiated → completed | did not complete |" in report
    assert "Rollback failed: " in section(report, "## Timeline")
    failure = section(report, "## Resolution").split("### Failure", 1)[1]
    assert f"The rollback failed: {rb.error}" in failure
    assert "State of backend/production when it failed:" in failure
    assert f"```text\n{rb.target_state}\n```" in failure
    assert "v1.2.4" in rb.target_state
    assert "- [ ] Bring backend/production to a known good state" in report
    comment = next(m for m in fake.thread(CHANNEL, card["ts"]) if m.get("files"))
    assert "failed" in text_of(comment)
    assert in_order(
        text_of(fake.message(CHANNEL, rb.timeline_ts or "")),
        ["*Rollback initiated*", "Rollback started", "Rollback failed", "not restored"],
    )

    # A request cancelled before anything ran gets no report of its own; one on demand.
    second = await request_card(bot, "backend v1.2.3")
    await bot.slack.click(second["channel"], second["ts"], ActionId.CANCEL, user=REQUESTER)
    await wait_card(bot, second, lambda m: "cancelled" in text_of(m))
    await fake.wait_for(
        lambda: (t := timeline_messages(fake, second)) and "Cancelled" in text_of(t[0])
    )
    cancelled = next(r for r in await bot.store.find() if r.state is State.CANCELLED)
    await bot.slack.command(f"report {cancelled.id}", user=REQUESTER, channel=CHANNEL)
    (only,) = await fake.wait_for(lambda: fake.uploads(CHANNEL, second["ts"]))
    assert "| Outcome | cancelled |" in only["content"]
    assert "The rollback is cancelled." in only["content"]
    stored = await bot.store.get(cancelled.id)
    assert stored is not None and stored.reported is None
    assert len(fake.uploads()) == 2
