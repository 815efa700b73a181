"""Post-rollback monitoring in the rollback's thread: a window opened on success, its rounds
run by the scheduler, a line only when a check changes, and a last line when it ends."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog

from bot.checklists import MONITORING_COMPLETE
from bot.engine import Engine
from bot.jobs import Clock, Job, JobKind, job_id
from bot.models import Rollback, State, utcnow
from bot.monitoring import Change, Window, run_round
from bot.scheduler import Again, Done
from bot.text import escape, mention
from bot.time_words import duration
from bot.verification import Check, render_table
from handlers.charts import ThreadCharts
from handlers.thread import SlackThread

log = structlog.get_logger(__name__)

# A rollback in these states has changed (or is changing) what runs: a window opened on
# what ran before watches something that is no longer there.
TOUCHING = frozenset({State.APPROVED, State.RUNNING, State.VERIFYING})
TOUCHED = frozenset({State.SUCCEEDED, State.FAILED, State.INTERRUPTED})


class Monitoring:
    """Opens a window when a rollback succeeds and runs its rounds."""

    def __init__(self, engine: Engine, thread: SlackThread, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.thread = thread
        self.clock = clock
        self.charts = ThreadCharts(thread)

    async def on_rollback_moved(self, rb: Rollback) -> None:
        """Hook: close earlier windows of a service that changed; open one on success."""
        await self._close_earlier(rb)
        if rb.state is State.SUCCEEDED and not rb.drill and not rb.dry_run:
            await self._open(rb)

    async def _open(self, rb: Rollback) -> None:
        config = self.engine.config
        settings = config.monitoring_for(rb.service, rb.environment)
        checks = config.environment(rb.service, rb.environment).checks
        if not settings.enabled or not checks:
            return  # the success message already says when no checks are configured
        started = rb.finished_at or self.clock()
        window = Window.open(rb.service, rb.environment, started, settings, checks)
        job = Job(
            id=job_id(JobKind.MONITOR, rb.id),
            rollback_id=rb.id,
            kind=JobKind.MONITOR,
            due_at=window.first_due,
            payload=window.model_dump(mode="json"),
        )
        if not await self.engine.jobs.schedule_job(job):
            return  # this hook ran before for the same success
        every = duration(timedelta(seconds=window.interval_seconds))
        text = (
            f"Monitoring {rb.service}/{rb.environment} for {duration(window.until - started)} "
            f"(until {window.until:%H:%M} UTC): checks every {every}"
        )
        await self.engine.record(rb, "rollbot", "monitoring_started", text)
        await self.thread.reply(
            rb, f":eyes: {escape(text)}; I will post here only if something changes."
        )

    async def _close_earlier(self, rb: Rollback) -> None:
        """Cancel the windows of other rollbacks of this service that `rb` has overtaken."""
        if rb.state not in TOUCHING | TOUCHED:
            return
        for job in await self.engine.jobs.pending_jobs([JobKind.MONITOR]):
            window = Window.model_validate(job.payload)
            same = (window.service, window.environment) == (rb.service, rb.environment)
            if not same or job.rollback_id == rb.id:
                continue
            # A rollback that finished before the window opened is older news: a hook
            # run again for it later must not close the newer window.
            if rb.state in TOUCHED and (rb.finished_at or self.clock()) <= window.started_at:
                continue
            if not await self.engine.jobs.cancel_jobs(job.rollback_id, [JobKind.MONITOR]):
                continue
            old = await self.engine.get(job.rollback_id)
            what = "drill" if rb.drill else "rollback"
            text = (
                f"Monitoring stopped after {window.rounds} round(s): {what} {rb.id} of "
                f"{rb.service}/{rb.environment} changes what this window watched"
            )
            await self.engine.record(old, "rollbot", "monitoring_stopped", text)
            await self.thread.reply(old, f":information_source: {escape(text)}.")

    async def run(self, job: Job, now: datetime) -> Again | Done | None:
        """Job: run one round of checks; say what changed; end the window when it is over."""
        rb = await self.engine.rollbacks.get(job.rollback_id)
        window = Window.model_validate(job.payload)
        services = self.engine.config.services
        service = services.get(window.service)
        if rb is None or service is None or window.environment not in service.environments:
            log.warning("monitoring window has nothing left to watch", job_id=job.id)
            return None
        checks = service.environments[window.environment].checks
        confirm = self.engine.config.runtime.verify_interval_seconds
        results, changed = await run_round(checks, window.ok, confirm)
        window.rounds += 1
        window.changes += len(changed)
        window.ok = {r.name: r.ok for r in results}
        following = window.next_due(job.due_at, now)
        if changed:
            for change in changed:
                await self.engine.record(rb, "rollbot", "monitoring", _event_text(change))
            await self.thread.reply(rb, _alert(rb, changed, render_table(results)))
            # A chart with the alert tells a spike from a trend, and shows the metric before
            # the release, without a trip to Prometheus. A recovery waits for the last
            # round, which charts every check anyway.
            if following is not None:
                bad = {c.result.name for c in changed if c.went_bad}
                await self.charts.post(rb, [c for c in checks if c.name in bad], now)
        if following is not None:
            return Again(following, window.model_dump(mode="json"))
        await self._complete(rb, window, checks, now)
        return Done(window.model_dump(mode="json"))

    async def _complete(
        self, rb: Rollback, window: Window, checks: Sequence[Check], now: datetime
    ) -> None:
        summary = (
            f"Monitoring complete: {window.rounds} check{'s' if window.rounds != 1 else ''} "
            f"over {duration(window.until - window.started_at)}, "
            f"{window.changes} change{'s' if window.changes != 1 else ''}"
        )
        failing = window.failing()
        if failing:
            summary += f"; still failing: {', '.join(failing)}"
        await self.engine.record(rb, "rollbot", MONITORING_COMPLETE, summary)
        if failing:
            line = f":warning: {mention(rb.requested_by)} {escape(summary)}."
        else:
            line = f":white_check_mark: {escape(summary)}."
        await self.thread.reply(rb, line)
        # After the last line: a chart that cannot be drawn or uploaded must not cost it.
        await self.charts.post(rb, checks, now)
        await self.thread.hooks.moved(await self.engine.get(rb.id))


def _event_text(change: Change) -> str:
    result = change.result
    if change.went_bad:
        return f"Monitoring: {result.name} is failing ({result.detail})"
    return f"Monitoring: {result.name} recovered ({result.detail})"


def _alert(rb: Rollback, changed: list[Change], table: str) -> str:
    """The message for one round in which checks changed, with the round's table."""
    bad = [c.result.name for c in changed if c.went_bad]
    good = [c.result.name for c in changed if not c.went_bad]
    parts = []
    if bad:
        parts.append(f"*{escape(', '.join(bad))}* started failing")
    if good:
        parts.append(f"*{escape(', '.join(good))}* recovered")
    icon = ":rotating_light:" if bad else ":white_check_mark:"
    return (
        f"{icon} {mention(rb.requested_by)} Monitoring {rb.service}/{rb.environment} after "
        f"rollback {rb.id}: {' and '.join(parts)}.\n```\n{escape(table)}\n```"
    )
