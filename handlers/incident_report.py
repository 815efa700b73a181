"""The incident report in Slack: uploaded to the thread when a rollback ends, and on demand."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError

from bot.errors import InvalidRequest
from bot.incident import REPORTED_STATES, filename, people, render_report, report_key, summary
from bot.models import Rollback
from bot.text import escape
from bot.timeline import build
from handlers.long_text import split_text
from handlers.thread import SlackThread
from handlers.timeline import KeyedLocks, LiveTimeline

log = structlog.get_logger(__name__)

# Sections of the rollback checklist (title, items of label/done/by) for the report.
ChecklistSource = Callable[[Rollback], Awaitable[Sequence[Any] | None]]
# Slack shows about 4,000 characters of a message before cutting it; code fences add a few.
REPORT_PART_MAX = 3_800


class IncidentReports:
    """Keeps a rollback's timeline live and uploads its incident report once per ending."""

    def __init__(self, thread: SlackThread, checklist: ChecklistSource | None = None) -> None:
        self.client = thread.client
        self.engine = thread.engine
        self.timeline = LiveTimeline(thread.client, thread.engine)
        self.checklist = checklist
        # Shared with the notification draft: one users.info a person serves both.
        self.profiles = thread.profiles
        # One upload at a time per rollback: two hook calls for one ending upload once.
        self._lock = KeyedLocks()

    async def finished(self, rollback: Rollback) -> None:
        """Upload the report when a rollback has ended (a hook listener; idempotent).

        Drills are practice, not incidents: their reports are made on demand only.
        """
        if rollback.state not in REPORTED_STATES or rollback.drill:
            return
        async with self._lock(rollback.id):
            rb = await self.engine.get(rollback.id)
            key = report_key(rb)
            if rb.state not in REPORTED_STATES or rb.reported == key:
                return
            if not (rb.channel_id and rb.thread_ts):
                return
            await self.upload(rb, rb.channel_id, rb.thread_ts)
            await self.engine.rollbacks.update(rb.id, reported=key)

    async def again(self, rollback_id: str) -> str:
        """Render the report with the latest state and upload it again; say where it went.

        It goes where the rollback is discussed, never where the command happened to be
        typed: the thread, else the rollback's channel, else the incident channel.
        """
        rb = await self.engine.get(rollback_id)
        try:
            await self.timeline.refresh(rb)
        except Exception as exc:
            log.warning("timeline not refreshed", rollback_id=rb.id, error=type(exc).__name__)
        if rb.channel_id and rb.thread_ts:
            await self.upload(rb, rb.channel_id, rb.thread_ts)
            return f"The incident report of {rb.id} is in its thread in <#{rb.channel_id}>."
        channel = rb.channel_id or self.engine.config.slack.incident_channel
        if channel is None:
            raise InvalidRequest(
                f"Rollback {rb.id} has no thread or channel (it ran from the terminal), and "
                "no slack.incident_channel is configured to post its report in."
            )
        await self.upload(rb, channel, None)
        return f"Rollback {rb.id} has no thread; its incident report is in <#{channel}>."

    async def render(self, rollback: Rollback) -> str:
        """Render the incident report of a rollback as it stands."""
        events = await self.engine.records.events(rollback.id)
        checklist = await self.checklist(rollback) if self.checklist else None
        names = await self.profiles.names(people(rollback, events, checklist))
        return render_report(
            rollback,
            events,
            matrix=self.engine.config.decision_matrix,
            names=names,
            checklist=checklist,
        )

    async def upload(self, rollback: Rollback, channel: str, thread_ts: str | None) -> None:
        """Upload the report as `incident-<id>.md` with a one-line summary."""
        content = await self.render(rollback)
        timeline = build(rollback, await self.engine.records.events(rollback.id))
        comment = (
            f":page_facing_up: {escape(summary(rollback, timeline))} "
            "People fill in the rest: the parts marked _To be written_."
        )
        if self.profiles.without_scope:
            comment += " People appear as Slack ids: rollbot lacks the `users:read` scope."
        try:
            await self.client.files_upload_v2(
                channel=channel,
                thread_ts=thread_ts,
                filename=filename(rollback),
                content=content,
                title=f"Incident report: {rollback.service}/{rollback.environment} {rollback.id}",
                initial_comment=comment,
            )
        except SlackApiError as exc:
            # No files:write, or uploads refused: the report still reaches the thread.
            error = str(exc.response.get("error"))
            log.warning("report upload refused; posting it", rollback_id=rollback.id, error=error)
            await self.post_instead(rollback, channel, thread_ts, content, comment, error)
            return
        log.info("incident report uploaded", rollback_id=rollback.id, state=rollback.state.value)

    async def post_instead(
        self,
        rollback: Rollback,
        channel: str,
        thread_ts: str | None,
        content: str,
        comment: str,
        error: str,
    ) -> None:
        """Post the report as messages, split where Slack would cut it, when no file can go."""
        why = (
            "rollbot lacks the `files:write` scope"
            if error == "missing_scope"
            else f"Slack refused the upload ({error})"
        )
        # As mrkdwn, not in a code block: Slack clients show a `<@U…>` mention as the
        # person's name even when rollbot may not read names (no users:read), and inside
        # code it would stay a raw id. Pinging the people of a rollback in its own thread
        # is what they expect; everything else in the report is escaped, so nothing else
        # in it (a reason someone typed, provider output) can ping, link or format.
        parts = split_text(escape(content), REPORT_PART_MAX)
        head = (
            f"{comment}\nNot attached as `{filename(rollback)}`: {why}. "
            f"It follows in {len(parts)} part(s)."
        )
        await self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=head)
        for part in parts:
            await self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=part)
        log.info("incident report posted", rollback_id=rollback.id, parts=len(parts))


def register(thread: SlackThread, checklist: ChecklistSource | None = None) -> IncidentReports:
    """Keep every rollback's timeline live and upload its report when it ends."""
    reports = IncidentReports(thread, checklist)
    # The timeline first: it is the thread's first reply, and the report follows it.
    thread.hooks.add(reports.timeline.refresh)
    thread.hooks.add(reports.finished)
    return reports
