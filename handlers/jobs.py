"""Scheduled work of the Slack bot: the hooks that schedule it, the scheduler that runs it,
and how `/rollback status` shows it."""

from __future__ import annotations

from bot.engine import Engine
from bot.jobs import Clock, JobKind
from bot.models import utcnow
from bot.monitoring import Window
from bot.scheduler import Scheduler
from handlers.freeze_watch import FreezeWatch
from handlers.monitoring import Monitoring
from handlers.thread import SlackThread
from handlers.urgency import Urgency


def register(engine: Engine, thread: SlackThread, clock: Clock = utcnow) -> None:
    """Open monitoring windows and arm escalations as rollbacks move."""
    thread.hooks.add(Monitoring(engine, thread, clock).on_rollback_moved)
    thread.hooks.add(Urgency(engine, thread, clock).on_rollback_moved)
    thread.hooks.add(FreezeWatch(engine, thread, clock).on_rollback_moved)


def scheduler(engine: Engine, thread: SlackThread, clock: Clock = utcnow) -> Scheduler:
    """Return the scheduler that runs monitoring rounds and escalations."""
    handlers = {
        JobKind.MONITOR: Monitoring(engine, thread, clock).run,
        JobKind.ESCALATE: Urgency(engine, thread, clock).run,
        JobKind.FREEZE_WATCH: FreezeWatch(engine, thread, clock).run,
    }
    return Scheduler(engine.jobs, handlers, clock=clock)


async def status_lines(engine: Engine, readable: set[tuple[str, str]]) -> list[str]:
    """Describe the monitoring windows in progress and the escalations still to come."""
    jobs = await engine.jobs.pending_jobs([JobKind.MONITOR, JobKind.ESCALATE])
    windows, escalations = [], []
    for job in jobs:
        rb = await engine.rollbacks.get(job.rollback_id)
        if rb is None or (rb.service, rb.environment) not in readable:
            continue
        if job.kind is JobKind.MONITOR:
            window = Window.model_validate(job.payload)
            windows.append(
                f"• `{job.rollback_id}` {window.service}/{window.environment} until "
                f"{window.until:%H:%M} UTC ({window.rounds} check(s) so far, "
                f"{window.changes} change(s))"
            )
        elif not job.payload.get("immediate"):
            where = f" {rb.service}/{rb.environment}"
            escalations.append(
                f"• `{job.rollback_id}`{where} at {job.due_at:%H:%M} UTC without approval "
                f"({job.payload.get('action')})"
            )
    lines = []
    if windows:
        lines += ["*Monitoring:*", *windows]
    if escalations:
        lines += ["*Escalations pending:*", *escalations]
    return lines
