"""End to end: monitoring after a rollback and escalation of late approvals, with a real
bot process (restarted on the same store), the fake Vercel API and a health endpoint."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

from bot.jobs import Job, JobKind, JobState, job_id
from bot.models import State, utcnow
from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    CHANNEL,
    REQUESTER,
    confirm,
    ephemeral_text,
    ready_to_approve,
    request_card,
    service_config,
    thread_text,
    wait_card,
)
from tests.support.bot import RunningBot, StartBot
from tests.support.services import FakeHttpServer, HttpServerFactory
from tests.support.slack import text_of
from tests.support.vercel import FakeVercel

ONCALL = "S_ONCALL"
TICK = 0.1


def frontend_config(
    vercel: FakeVercel,
    site: FakeHttpServer,
    *,
    monitoring: dict[str, Any] | None = None,
    urgency: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Vercel frontend, its home page as the check, and quick schedules."""
    config = service_config("frontend", vercel.settings(), site.url, check_name="frontend home")
    config["runtime"]["scheduler_tick_seconds"] = TICK
    config["slack"] = {"oncall_group": ONCALL}
    config["monitoring"] = monitoring or {}
    config["urgency"] = urgency or {}
    return config


async def rolled_back(bot: RunningBot) -> dict[str, Any]:
    """Roll the frontend back to v1.2.3 (a critical bug) through Slack and return the card."""
    card = await ready_to_approve(bot, "frontend v1.2.3", "critical_bug")
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))
    return card


def replies(bot: RunningBot, card: dict[str, Any], needle: str) -> list[str]:
    """Return the texts of the card's thread replies that contain `needle`.

    The live timeline message is left out: it repeats every line of the timeline.
    """
    texts = [text_of(m) for m in bot.fake.thread(card["channel"], card["ts"])]
    return [t for t in texts if needle in t and not t.startswith("Timeline of rollback")]


async def finished_job(bot: RunningBot, job: str) -> Job:
    """Wait for a job to be done: its last line is posted just before it is marked so."""
    for _ in range(200):
        found = await bot.store.get_job(job)
        if found is not None and found.state is JobState.DONE:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{job} is not done: {found}")


async def test_a_check_going_bad_in_the_window_alerts_once_then_monitoring_completes(
    start_rollbot: StartBot, vercel: FakeVercel, http_server: HttpServerFactory
) -> None:
    site = await http_server(200, "<html>frontend</html>")
    monitoring = {"interval_minutes": 0.01, "window_minutes": 0.06}  # 6 rounds in 3.6 s
    bot = await start_rollbot(
        frontend_config(vercel, site, monitoring=monitoring),
        extra_env={"VERCEL_TOKEN": vercel.token},
    )
    card = await rolled_back(bot)
    await bot.fake.wait_for(lambda: replies(bot, card, "checks every 1 second"))
    (rb,) = await bot.store.find()

    await bot.slack.command("status", user=REQUESTER, channel=CHANNEL)
    status = await bot.fake.wait_for(
        lambda: t if "*Monitoring:*" in (t := ephemeral_text(bot.fake)) else None
    )
    assert f"`{rb.id}` frontend/production until " in status and "check(s) so far" in status

    site.set(503, "down")
    await bot.fake.wait_for(lambda: replies(bot, card, "Monitoring complete"))

    (alert,) = replies(bot, card, "started failing")
    assert f"<@{REQUESTER}>" in alert
    assert "*frontend home* started failing" in alert and "HTTP 503 (expected 200)" in alert
    (done,) = replies(bot, card, "Monitoring complete")
    # Six rounds, unless a slow machine made the bot skip one it was late for.
    counted = re.search(r"Monitoring complete: ([56]) checks over 4 seconds, 1 change;", done)
    assert counted, done
    assert "still failing: frontend home" in done and f"<@{REQUESTER}>" in done

    events = [(e.kind, e.text) for e in await bot.store.events(rb.id)]
    kinds = [kind for kind, _ in events]
    assert kinds.count("monitoring") == 1 and kinds.count("monitoring_complete") == 1
    assert kinds.index("succeeded") < kinds.index("monitoring_started")
    assert kinds.index("monitoring") < kinds.index("monitoring_complete")
    assert ("monitoring", "Monitoring: frontend home is failing (HTTP 503 (expected 200))") in (
        events
    )
    job = await finished_job(bot, job_id(JobKind.MONITOR, rb.id))
    assert job.payload["rounds"] == int(counted.group(1))


async def test_a_restart_in_the_middle_of_the_window_resumes_it(
    start_rollbot: StartBot, vercel: FakeVercel, http_server: HttpServerFactory
) -> None:
    site = await http_server(200, "<html>frontend</html>")
    config = frontend_config(
        vercel, site, monitoring={"interval_minutes": 0.01, "window_minutes": 0.1}
    )
    first = await start_rollbot(config, extra_env={"VERCEL_TOKEN": vercel.token})
    card = await rolled_back(first)
    (rb,) = await first.store.find()
    monitor = job_id(JobKind.MONITOR, rb.id)

    async def rounds() -> int:
        job = await first.store.get_job(monitor)
        return int(job.payload.get("rounds", 0)) if job else 0

    while await rounds() < 1:
        await asyncio.sleep(0.05)
    await first.stop()
    before_stop = await rounds()
    posted = len(first.fake.messages(CHANNEL))
    site.set(503, "down")  # goes bad while nobody is watching

    second = await start_rollbot(config, extra_env={"VERCEL_TOKEN": vercel.token})
    await second.fake.wait_for(lambda: replies(second, card, "Monitoring complete"), timeout=20)

    later = [text_of(m) for m in second.fake.messages(CHANNEL)[posted:]]
    assert sum("started failing" in text for text in later) == 1
    assert sum("Monitoring complete" in text for text in later) == 1
    assert replies(second, card, "Monitoring complete") == [
        text for text in later if "Monitoring complete" in text
    ]
    job = await finished_job(second, monitor)
    assert job.payload["rounds"] > before_stop
    kinds = [e.kind for e in await second.store.events(rb.id)]
    assert kinds.count("monitoring_started") == 1 and kinds.count("monitoring_complete") == 1


async def test_a_deadline_passing_without_approval_escalates_once(
    start_rollbot: StartBot, vercel: FakeVercel, http_server: HttpServerFactory
) -> None:
    site = await http_server(200, "<html>frontend</html>")
    config = frontend_config(vercel, site, urgency={"within_15_min": 0.05})  # 3 s
    bot = await start_rollbot(config, extra_env={"VERCEL_TOKEN": vercel.token})

    card = await ready_to_approve(bot, "frontend v1.2.3", "performance_degradation")
    await bot.fake.wait_for(lambda: replies(bot, card, ":alarm_clock:"))
    (rb,) = await bot.store.find()
    await bot.slack.command("status", user=REQUESTER, channel=CHANNEL)
    await bot.fake.wait_for(lambda: "*Escalations pending:*" in ephemeral_text(bot.fake))
    assert f"`{rb.id}` frontend/production at " in ephemeral_text(bot.fake)
    assert not replies(bot, card, ":rotating_light:")  # not before its time

    (escalation,) = await bot.fake.wait_for(lambda: replies(bot, card, ":rotating_light:"))
    assert f"<!subteam^{ONCALL}>" in escalation and f"<@{APPROVER}>" in escalation
    assert escalation.count(f"<!subteam^{ONCALL}>") == 1  # on call and approvers: once
    assert re.search(
        r"has waited \d seconds for approval \(0 of 1 approval\(s\) so far\)", escalation
    )
    assert "*rollback within 15 min* for performance degradation &gt; 50%" in escalation
    await asyncio.sleep(TICK * 5)
    assert len(replies(bot, card, ":rotating_light:")) == 1
    rb = await bot.store.get(rb.id) or rb
    assert rb.state is State.AWAITING_APPROVAL
    assert [e.kind for e in await bot.store.events(rb.id)].count("escalation") == 1

    # An immediate rollback calls the on-call group at once, with no timer.
    await bot.slack.command(f"cancel {rb.id}", user=REQUESTER, channel=CHANNEL)
    await wait_card(bot, card, lambda m: "cancelled" in text_of(m))
    urgent = await request_card(bot, "frontend v1.2.3")
    await confirm(bot, urgent, "critical_bug")
    (called,) = await bot.fake.wait_for(lambda: replies(bot, urgent, ":rotating_light:"))
    assert f"<!subteam^{ONCALL}>" in called and "needs approval now" in called
    assert "*immediate rollback* for critical bug affecting all users" in called
    assert not replies(bot, urgent, ":alarm_clock:")


async def test_approval_before_the_deadline_disarms_it_and_a_new_rollback_ends_the_window(
    start_rollbot: StartBot, vercel: FakeVercel, http_server: HttpServerFactory
) -> None:
    site = await http_server(200, "<html>frontend</html>")
    config = frontend_config(vercel, site, urgency={"within_15_min": 0.03})  # 1.8 s
    bot = await start_rollbot(config, extra_env={"VERCEL_TOKEN": vercel.token})

    card = await ready_to_approve(bot, "frontend v1.2.3", "performance_degradation")
    await bot.fake.wait_for(lambda: replies(bot, card, ":alarm_clock:"))  # armed
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))
    (rb,) = await bot.store.find()
    escalation = await bot.store.get_job(job_id(JobKind.ESCALATE, rb.id))
    assert escalation is not None and escalation.state is JobState.CANCELLED
    await bot.fake.wait_for(lambda: replies(bot, card, "Monitoring frontend/production for 30"))
    deadline = rb.created_at + timedelta(seconds=1.8)
    await asyncio.sleep(max(0.0, (deadline - utcnow()).total_seconds()) + TICK * 5)
    assert not replies(bot, card, ":rotating_light:")
    assert "escalation" not in [e.kind for e in await bot.store.events(rb.id)]

    # A newer rollback of the same service changes what the first window watched.
    newer = await ready_to_approve(bot, "frontend v1.2.2", "critical_bug")
    await bot.slack.click(newer["channel"], newer["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, newer))
    (stopped,) = await bot.fake.wait_for(lambda: replies(bot, card, "Monitoring stopped"))
    assert "frontend/production changes what this window watched" in stopped
    first = await bot.store.get_job(job_id(JobKind.MONITOR, rb.id))
    assert first is not None and first.state is JobState.CANCELLED
    await bot.fake.wait_for(lambda: replies(bot, newer, "Monitoring frontend/production for"))
    (latest,) = [r for r in await bot.store.find() if r.id != rb.id]
    windows = await bot.store.pending_jobs([JobKind.MONITOR])
    assert [job.rollback_id for job in windows] == [latest.id]
